// Package store keeps in PostgreSQL what end users and the platform change
// live: API keys, the directory (tenants, memberships with roles, user
// states) and the token page's sessions. It owns the schema and its
// migrations, the transactions of the management API (each taking the next
// value of one version counter, so commit order is version order, and
// writing one change log for every kind of data), the change feed every
// replica follows (LISTEN first, then a consistent snapshot, then the
// changes after it in version order, with a poll for lost notifications)
// into an in-memory keys.View and directory.View published together, and
// usage flushed in batches. It was keys/pgstore.
//
// No check ever waits on the database: checks read the mirror. It never
// stores, logs or returns a plaintext key; the digest never leaves it
// except into the mirror's index. It must not import policy, authn or the
// API: the API decides who may do what, this package only does it.
package store
