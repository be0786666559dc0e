package store

// This file holds the store's transactions: every change takes the next
// version, writes the change log and notifies the replicas, in one
// transaction; a refused change rolls back whole.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/keys"
)

// channel is the NOTIFY channel; a notification carries only a version.
const channel = "portcullis_keys"

// The store's errors. A change that returns one changed nothing.
var (
	ErrNotFound = errors.New("no such key")   // or a deleted one
	ErrConflict = errors.New("key id taken")  // by a key, deleted or not
	ErrLimit    = errors.New("limit reached") // wrapped with which limit
)

// Key is one key as the store holds it: never a plaintext.
type Key struct {
	ID          string
	Digest      keys.Digest
	Start       string // the key's first characters, to recognise it by
	User        string
	Tenant      string
	Tier        string
	Label       string
	Description string
	CreatedAt   time.Time
	CreatedBy   string
	ExpiresAt   time.Time // zero: never
	Disabled    bool
	DisabledBy  string    // who disabled it: DisabledByOwner, DisabledByTenantAdmin, DisabledByPlatform; "" when enabled
	RevokedAt   time.Time // zero: not deleted
	Previous    *keys.Previous
	LastUsedAt  time.Time      // zero: never used
	Limit       keys.RateLimit // its own rate limit; zero: its tenant's plan
	Version     int64
}

// Who disabled a key, as Key.DisabledBy and the API's disabled_by say.
const (
	DisabledByOwner       = "owner"
	DisabledByTenantAdmin = "tenant_admin"
	DisabledByPlatform    = "platform"
)

// Store runs the key-management transactions. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	notify bool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool, notify: true} }

// WithoutNotify returns a Store whose changes send no notification, as if
// every one were lost: replicas must catch up by their poll (for tests and
// the lost-notification benchmark).
func (s *Store) WithoutNotify() *Store { return &Store{pool: s.pool} }

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const keyColumns = `id, digest, start, coalesce(user_id, ''), coalesce(tenant, ''), tier, label, description,
	created_at, created_by, expires_at, disabled, coalesce(disabled_by, ''), revoked_at, previous_digest, previous_expires_at, last_used_at,
	coalesce(rate_limit_per_unit, 0), coalesce(rate_limit_unit, ''), version`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	var digest, prev []byte
	var expires, revoked, prevExpires, lastUsed *time.Time
	var perUnit int64
	var unit string
	err := row.Scan(&k.ID, &digest, &k.Start, &k.User, &k.Tenant, &k.Tier, &k.Label, &k.Description,
		&k.CreatedAt, &k.CreatedBy, &expires, &k.Disabled, &k.DisabledBy, &revoked, &prev, &prevExpires, &lastUsed,
		&perUnit, &unit, &k.Version)
	if err != nil {
		return k, err
	}
	k.Limit = keys.RateLimit{PerUnit: uint32(perUnit), Unit: keys.UnitOf(unit)}
	copy(k.Digest[:], digest)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = deref(expires), deref(revoked), deref(lastUsed)
	if len(prev) == len(keys.Digest{}) && prevExpires != nil {
		k.Previous = &keys.Previous{Expires: *prevExpires}
		copy(k.Previous.Digest[:], prev)
	}
	return k, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// change runs fn in a transaction holding the next version: the counter
// row stays locked until commit, so changes commit in version order. The
// change log gets a row per key changed (ids fn returns), and the replicas
// a notification at commit.
func (s *Store) change(ctx context.Context, op, by string, fn func(tx pgx.Tx, version int64) ([]string, error)) (int64, error) {
	return s.changeLogged(ctx, by, func(tx pgx.Tx, version int64) ([]logged, error) {
		ids, err := fn(tx, version)
		out := make([]logged, len(ids))
		for i, id := range ids {
			out[i] = logged{kind: "key", id: id, op: op}
		}
		return out, err
	})
}

// logged is one row of the change log: what changed (a key, a tenant, a
// membership "tenant/user", a user), and how.
type logged struct{ kind, id, op string }

// changeLogged is change for changes of any kind: fn says what it changed.
func (s *Store) changeLogged(ctx context.Context, by string, fn func(tx pgx.Tx, version int64) ([]logged, error)) (int64, error) {
	var version int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "UPDATE portcullis_version SET version = version + 1 RETURNING version").Scan(&version); err != nil {
			return err
		}
		rows, err := fn(tx, version)
		if err != nil {
			return err
		}
		if len(rows) > 0 {
			kinds, ids, ops := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
			for i, r := range rows {
				kinds[i], ids[i], ops[i] = r.kind, r.id, r.op
			}
			if _, err := tx.Exec(ctx, `INSERT INTO portcullis_changes (version, kind, key_id, op, by)
				SELECT $1, k, id, o, $2 FROM unnest($3::text[], $4::text[], $5::text[]) AS c(k, id, o)`, version, by, kinds, ids, ops); err != nil {
				return err
			}
		}
		if s.notify {
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", channel, strconv.FormatInt(version, 10))
		}
		return err
	})
	return version, err
}

// NewKey is a key to create.
type NewKey struct {
	ID, Start, User, Tenant, Tier, Label, Description, CreatedBy string
	Digest                                                       keys.Digest
	CreatedAt, ExpiresAt                                         time.Time
	Limit                                                        keys.RateLimit // zero: none
}

// limitColumns are a rate limit as the columns hold it (NULLs for none).
func limitColumns(l keys.RateLimit) (*int64, *string) {
	if l.PerUnit == 0 {
		return nil, nil
	}
	n, u := int64(l.PerUnit), l.Unit.String()
	return &n, &u
}

// Limits bound how many keys exist (not counting deleted ones): 0 is no
// limit. Total counts the store's keys only (a caller subtracts the keys a
// policy holds in files); a negative Total means none may be added.
type Limits struct {
	Total   int
	PerUser int
}

// Create adds k, unless its id or digest is taken (ErrConflict) or a limit
// is reached (ErrLimit), both checked inside the transaction: under
// concurrent creates, exactly the limit succeed.
func (s *Store) Create(ctx context.Context, k NewKey, lim Limits) (Key, error) {
	var out Key
	_, err := s.change(ctx, "create", k.CreatedBy, func(tx pgx.Tx, v int64) ([]string, error) {
		if err := checkLimits(ctx, tx, k.User, lim); err != nil {
			return nil, err
		}
		perUnit, unit := limitColumns(k.Limit)
		row := tx.QueryRow(ctx, `INSERT INTO portcullis_keys (id, digest, start, user_id, tenant, tier, label, description,
			created_at, created_by, expires_at, version, rate_limit_per_unit, rate_limit_unit)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			RETURNING `+keyColumns, k.ID, k.Digest[:], k.Start, nullString(k.User), nullString(k.Tenant), k.Tier,
			k.Label, k.Description, k.CreatedAt, k.CreatedBy, nullTime(k.ExpiresAt), v, perUnit, unit)
		var err error
		out, err = scanKey(row)
		if isUnique(err) {
			return nil, ErrConflict
		}
		return []string{k.ID}, err
	})
	return out, err
}

func checkLimits(ctx context.Context, tx pgx.Tx, user string, lim Limits) error {
	switch {
	case lim.Total < 0:
		return fmt.Errorf("%w: key_limit (the policy's own keys fill it)", ErrLimit)
	case lim.Total > 0:
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM portcullis_keys WHERE revoked_at IS NULL").Scan(&n); err != nil {
			return err
		}
		if n >= lim.Total {
			return fmt.Errorf("%w: key_limit of %d keys", ErrLimit, lim.Total)
		}
	}
	if lim.PerUser > 0 && user != "" {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM portcullis_keys WHERE revoked_at IS NULL AND user_id = $1", user).Scan(&n); err != nil {
			return err
		}
		if n >= lim.PerUser {
			return fmt.Errorf("%w: per_user_limit of %d keys", ErrLimit, lim.PerUser)
		}
	}
	return nil
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Get returns key id, unless it does not exist or was deleted.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, "SELECT "+keyColumns+" FROM portcullis_keys WHERE id = $1 AND revoked_at IS NULL", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return k, ErrNotFound
	}
	return k, err
}

// Scope is what a caller may manage: every key (All), else the keys of
// User and the keys bound to Tenants.
type Scope struct {
	All     bool
	User    string
	Tenants []string
}

// Filter narrows a listing: "" matches anything.
type Filter struct{ User, Tenant string }

// List returns up to limit keys of scope matching f, by id, after the id
// after ("" from the start). Deleted keys are never listed.
func (s *Store) List(ctx context.Context, scope Scope, f Filter, after string, limit int) ([]Key, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+keyColumns+` FROM portcullis_keys
		WHERE revoked_at IS NULL AND id > $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR tenant = $3)
		AND ($4 OR user_id = $5 OR tenant = ANY($6)) ORDER BY id LIMIT $7`,
		after, f.User, f.Tenant, scope.All, scope.User, scope.Tenants, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
}

// lock returns key id locked for update inside tx, after may has allowed
// it: a key the caller may not manage is ErrNotFound, never another error.
func lock(ctx context.Context, tx pgx.Tx, id string, may func(Key) bool) (Key, error) {
	k, err := scanKey(tx.QueryRow(ctx, "SELECT "+keyColumns+" FROM portcullis_keys WHERE id = $1 AND revoked_at IS NULL FOR UPDATE", id))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !may(k)) {
		return k, ErrNotFound
	}
	return k, err
}

// Patch is a change of a key's names, expiry or state; nil fields stay.
type Patch struct {
	Label, Description *string
	ExpiresAt          *time.Time // the zero time: never
	Disabled           *bool
	// Limit, when set, gives the key's own rate limit from the key as it
	// was (the zero limit: none, its tenant's plan); an error refuses the
	// patch.
	Limit func(before Key) (keys.RateLimit, error)
	// DisabledBy says who the caller is to the key (DisabledByOwner, …),
	// recorded when Disabled disables it; a key disabled already keeps
	// the weightier of the two (platform over tenant admin over owner).
	DisabledBy func(Key) string
	// Check, when set, is asked about the key as it was and as it will be
	// (the expiry against the policy's lifetime, who may enable it); an
	// error refuses the patch.
	Check func(before, after Key) error
}

// weight orders who disabled a key: a later disable by someone lighter
// never makes it easier to enable.
func weight(by string) int {
	switch by {
	case DisabledByOwner:
		return 1
	case DisabledByTenantAdmin:
		return 2
	case DisabledByPlatform:
		return 3
	}
	return 0
}

// Update applies p to key id if may allows it.
func (s *Store) Update(ctx context.Context, id string, p Patch, by string, may func(Key) bool) (Key, error) {
	var out Key
	_, err := s.change(ctx, "update", by, func(tx pgx.Tx, v int64) ([]string, error) {
		k, err := lock(ctx, tx, id, may)
		if err != nil {
			return nil, err
		}
		before := k
		if p.Label != nil {
			k.Label = *p.Label
		}
		if p.Description != nil {
			k.Description = *p.Description
		}
		if p.ExpiresAt != nil {
			k.ExpiresAt = *p.ExpiresAt
		}
		if p.Limit != nil {
			if k.Limit, err = p.Limit(before); err != nil {
				return nil, err
			}
		}
		if p.Disabled != nil {
			k.Disabled = *p.Disabled
			switch {
			case !k.Disabled:
				k.DisabledBy = ""
			case p.DisabledBy != nil:
				if by := p.DisabledBy(before); weight(by) > weight(k.DisabledBy) {
					k.DisabledBy = by
				}
			case k.DisabledBy == "":
				k.DisabledBy = DisabledByPlatform
			}
		}
		if p.Check != nil {
			if err := p.Check(before, k); err != nil {
				return nil, err
			}
		}
		perUnit, unit := limitColumns(k.Limit)
		out, err = scanKey(tx.QueryRow(ctx, `UPDATE portcullis_keys SET label = $2, description = $3, expires_at = $4,
			disabled = $5, disabled_by = $6, version = $7, rate_limit_per_unit = $8, rate_limit_unit = $9 WHERE id = $1 RETURNING `+keyColumns,
			id, k.Label, k.Description, nullTime(k.ExpiresAt), k.Disabled, nullString(k.DisabledBy), v, perUnit, unit))
		return []string{id}, err
	})
	return out, err
}

// Refresh is a new value for a key.
type Refresh struct {
	Digest    keys.Digest
	Start     string
	ExpiresAt *time.Time    // nil: unchanged; the zero time: never
	Overlap   time.Duration // how long the old value keeps working; 0: none
	Now       time.Time
	Check     func(before, after Key) error // as in Patch
}

// Refresh gives key id a new value if may allows it; with an overlap the
// old value keeps working that long (never past the key's own expiry).
func (s *Store) Refresh(ctx context.Context, id string, r Refresh, by string, may func(Key) bool) (Key, error) {
	var out Key
	_, err := s.change(ctx, "refresh", by, func(tx pgx.Tx, v int64) ([]string, error) {
		k, err := lock(ctx, tx, id, may)
		if err != nil {
			return nil, err
		}
		before := k
		if r.ExpiresAt != nil {
			k.ExpiresAt = *r.ExpiresAt
		}
		if r.Check != nil {
			if err := r.Check(before, k); err != nil {
				return nil, err
			}
		}
		var prev []byte
		var prevUntil *time.Time
		if r.Overlap > 0 {
			until := r.Now.Add(r.Overlap)
			if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(until) {
				until = k.ExpiresAt
			}
			prev, prevUntil = k.Digest[:], &until
		}
		out, err = scanKey(tx.QueryRow(ctx, `UPDATE portcullis_keys SET digest = $2, start = $3, expires_at = $4,
			previous_digest = $5, previous_expires_at = $6, version = $7 WHERE id = $1 RETURNING `+keyColumns,
			id, r.Digest[:], r.Start, nullTime(k.ExpiresAt), prev, prevUntil, v))
		if isUnique(err) {
			return nil, ErrConflict
		}
		return []string{id}, err
	})
	return out, err
}

// Delete deletes key id if may allows it: it is refused from then on.
func (s *Store) Delete(ctx context.Context, id, by string, may func(Key) bool) (int64, error) {
	return s.change(ctx, "delete", by, func(tx pgx.Tx, v int64) ([]string, error) {
		if _, err := lock(ctx, tx, id, may); err != nil {
			return nil, err
		}
		_, err := tx.Exec(ctx, "UPDATE portcullis_keys SET revoked_at = now(), version = $2 WHERE id = $1", id, v)
		return []string{id}, err
	})
}

// DeleteAll deletes every key of scope matching f (at least one of its
// fields set) and returns their ids.
func (s *Store) DeleteAll(ctx context.Context, scope Scope, f Filter, by string) ([]string, int64, error) {
	if f.User == "" && f.Tenant == "" {
		return nil, 0, errors.New("deleting all keys needs a user or a tenant")
	}
	var deleted []string
	v, err := s.change(ctx, "delete", by, func(tx pgx.Tx, v int64) ([]string, error) {
		rows, err := tx.Query(ctx, `UPDATE portcullis_keys SET revoked_at = now(), version = $1
			WHERE revoked_at IS NULL AND ($2 = '' OR user_id = $2) AND ($3 = '' OR tenant = $3)
			AND ($4 OR user_id = $5 OR tenant = ANY($6)) RETURNING id`, v, f.User, f.Tenant, scope.All, scope.User, scope.Tenants)
		if err != nil {
			return nil, err
		}
		deleted, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return deleted, err
	})
	return deleted, v, err
}

// Version returns the latest committed version.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, "SELECT version FROM portcullis_version").Scan(&v)
	return v, err
}

// Prune removes keys deleted before cutoff, and change log rows older than
// it, and returns how many keys it removed; a mirror whose cursor is older
// than what was removed loads everything again.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var upTo *int64
		if err := tx.QueryRow(ctx, `WITH gone AS (DELETE FROM portcullis_keys WHERE revoked_at < $1 RETURNING version)
			SELECT count(*), max(version) FROM gone`, cutoff).Scan(&n, &upTo); err != nil {
			return err
		}
		// The directory's tombstones: ended memberships and deleted
		// tenants whose change is older than cutoff.
		var dirUpTo *int64
		if err := tx.QueryRow(ctx, `WITH horizon AS (SELECT coalesce(max(version), 0) AS v FROM portcullis_changes WHERE at < $1),
			members AS (DELETE FROM portcullis_members WHERE removed AND version <= (SELECT v FROM horizon) RETURNING version),
			names AS (DELETE FROM portcullis_tenant_names WHERE tenant IN (SELECT id FROM portcullis_tenants WHERE deleted_at < $1)),
			tenants AS (DELETE FROM portcullis_tenants t WHERE deleted_at < $1
				AND NOT EXISTS (SELECT 1 FROM portcullis_members m WHERE m.tenant = t.id AND NOT (m.removed AND m.version <= (SELECT v FROM horizon)))
				RETURNING version)
			SELECT max(version) FROM (SELECT version FROM members UNION ALL SELECT version FROM tenants) AS gone`, cutoff).Scan(&dirUpTo); err != nil {
			return err
		}
		if dirUpTo != nil && (upTo == nil || *dirUpTo > *upTo) {
			upTo = dirUpTo
		}
		if upTo != nil {
			if _, err := tx.Exec(ctx, "UPDATE portcullis_version SET pruned_below = greatest(pruned_below, $1 + 1)", *upTo); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM portcullis_changes WHERE at < $1", cutoff); err != nil {
			return err
		}
		return pruneSessions(ctx, tx, time.Now())
	})
	return n, err
}
