// Package pgstore keeps API keys in PostgreSQL, the system of record for
// keys that end users create and revoke: the schema and its migrations, the
// transactions of the key-management API (each taking the next value of one
// version counter, so commit order is version order), the change feed every
// replica follows (LISTEN first, then a consistent snapshot, then the
// changes after it in version order, with a poll for lost notifications)
// into an in-memory keys.View, and usage flushed in batches.
//
// No check ever waits on the database: checks read the mirror. It never
// stores, logs or returns a plaintext key; the digest never leaves it
// except into the mirror's index. It must not import policy or authn: the
// API decides who may do what, this package only does it.
package pgstore
