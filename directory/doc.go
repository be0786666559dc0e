// Package directory owns tenants, memberships, roles and user states as
// data: the immutable, pointer-free Table a check reads without locks, the
// Layers of changes a replica's mirror puts on top of it, and the View
// that combines them.
//
// A million memberships cost the garbage collector nothing: names live in
// one text arena, records are numbers and offsets, and lookups go through
// open-addressing tables of int32. A View's few Layers are small maps,
// merged into a new Table off the check path once they grow.
//
// It must not import policy, authn, the store or any transport: it knows
// no SQL and decides nothing. The policy asks it who is a member of what,
// with which role, and whether a tenant or a user is disabled; the store
// fills it.
package directory
