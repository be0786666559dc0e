package store

// This file holds the directory's transactions: tenants, memberships and
// user states, each change one transaction on the version counter and the
// change log, like a key's. The API decides who may make a change and
// what the policy's own tenants forbid; the store keeps the names of its
// tenants unique and apart from the users it knows, inside the
// transaction.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/directory"
)

// The directory's errors. A change that returns one changed nothing.
var (
	ErrNoTenant  = errors.New("no such tenant")     // or a deleted one
	ErrNotMember = errors.New("no such membership") // or an ended one
)

// Tenant is a store tenant: the directory's tenant and the version that
// last changed it.
type Tenant struct {
	directory.Tenant
	Version int64
}

// TenantPut changes a tenant: nil fields stay as they are (a new tenant
// takes the empty value).
type TenantPut struct {
	DisplayName *string
	Aliases     *[]string
	Disabled    *bool
	Plan        *string
}

// Names says which names outside the store are taken: the policy's tenant
// names and aliases (Tenant) and the user ids its member lists hold
// (User). Nil answers no.
type Names struct {
	Tenant func(name string) bool
	User   func(id string) bool
}

func (n Names) tenant(name string) bool { return n.Tenant != nil && n.Tenant(name) }
func (n Names) user(id string) bool     { return n.User != nil && n.User(id) }

func conflictf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, args...))
}

const tenantColumns = `id, display_name, aliases, disabled, coalesce(plan, ''), created_at, version`

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.DisplayName, &t.Aliases, &t.Disabled, &t.Plan, &t.CreatedAt, &t.Version)
	t.CreatedAt = t.CreatedAt.UTC()
	if t.Aliases == nil {
		t.Aliases = []string{}
	}
	return t, err
}

// PutTenant creates tenant id, or changes the fields p sends, and reports
// whether it was created. Its id and aliases must not name another store
// tenant, a name outside taken, or a user the directory knows (users and
// tenants share the tenant header): ErrConflict otherwise.
func (s *Store) PutTenant(ctx context.Context, id string, p TenantPut, by string, taken Names, now time.Time) (Tenant, bool, error) {
	var out Tenant
	var created bool
	_, err := s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		t, err := scanTenant(tx.QueryRow(ctx, "SELECT "+tenantColumns+" FROM portcullis_tenants WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", id))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			created = true
			t = Tenant{Tenant: directory.Tenant{ID: id, Aliases: []string{}, CreatedAt: now}}
		case err != nil:
			return nil, err
		}
		if p.DisplayName != nil {
			t.DisplayName = *p.DisplayName
		}
		if p.Aliases != nil {
			t.Aliases = slices.Clone(*p.Aliases)
		}
		if p.Disabled != nil {
			t.Disabled = *p.Disabled
		}
		if p.Plan != nil {
			t.Plan = *p.Plan
		}
		names := append([]string{id}, t.Aliases...)
		if err := namesFree(ctx, tx, id, names, taken); err != nil {
			return nil, err
		}
		out, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO portcullis_tenants (id, display_name, aliases, disabled, plan, created_at, created_by, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO UPDATE SET display_name = $2, aliases = $3, disabled = $4, plan = $5, version = $8,
				deleted_at = NULL, created_at = CASE WHEN portcullis_tenants.deleted_at IS NULL THEN portcullis_tenants.created_at ELSE $6 END
			RETURNING `+tenantColumns, id, t.DisplayName, t.Aliases, t.Disabled, nullString(t.Plan), t.CreatedAt, by, v))
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM portcullis_tenant_names WHERE tenant = $1", id); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO portcullis_tenant_names (name, tenant) SELECT n, $1 FROM unnest($2::text[]) AS n", id, names); err != nil {
			if isUnique(err) {
				return nil, conflictf("a name of tenant %q is taken by another tenant", id)
			}
			return nil, err
		}
		op := "update"
		if created {
			op = "create"
		}
		return []logged{{"tenant", id, op}}, nil
	})
	return out, created, err
}

// namesFree refuses names of tenant id that another store tenant holds,
// that taken holds, or that are users the directory knows.
func namesFree(ctx context.Context, tx pgx.Tx, id string, names []string, taken Names) error {
	for _, n := range names {
		if taken.tenant(n) {
			return conflictf("%q is a tenant name or alias of the policy", n)
		}
		if taken.user(n) {
			return conflictf("%q is a user id the policy's member lists hold: users and tenants share the tenant header", n)
		}
	}
	var other, name string
	err := tx.QueryRow(ctx, "SELECT tenant, name FROM portcullis_tenant_names WHERE name = ANY($1) AND tenant <> $2 LIMIT 1", names, id).Scan(&other, &name)
	switch {
	case err == nil:
		return conflictf("%q already names tenant %q", name, other)
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	err = tx.QueryRow(ctx, `SELECT user_id FROM portcullis_members WHERE user_id = ANY($1) AND NOT removed
		UNION ALL SELECT id FROM portcullis_users WHERE id = ANY($1) LIMIT 1`, names).Scan(&name)
	switch {
	case err == nil:
		return conflictf("%q is a user id the directory knows: users and tenants share the tenant header", name)
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	return nil
}

// userFree refuses a user id that names a store tenant or a name taken
// holds.
func userFree(ctx context.Context, tx pgx.Tx, users []string, taken Names) error {
	for _, u := range users {
		if taken.tenant(u) {
			return conflictf("user %q is a tenant name or alias of the policy: users and tenants share the tenant header", u)
		}
	}
	var name string
	err := tx.QueryRow(ctx, "SELECT name FROM portcullis_tenant_names WHERE name = ANY($1) LIMIT 1", users).Scan(&name)
	switch {
	case err == nil:
		return conflictf("user %q is a tenant's id or alias: users and tenants share the tenant header", name)
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	return nil
}

// GetTenant returns store tenant id.
func (s *Store) GetTenant(ctx context.Context, id string) (Tenant, error) {
	t, err := scanTenant(s.pool.QueryRow(ctx, "SELECT "+tenantColumns+" FROM portcullis_tenants WHERE id = $1 AND deleted_at IS NULL", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNoTenant
	}
	return t, err
}

// ListTenants returns up to limit store tenants by id, after the id after.
func (s *Store) ListTenants(ctx context.Context, after string, limit int) ([]Tenant, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+tenantColumns+` FROM portcullis_tenants WHERE deleted_at IS NULL AND id > $1
		ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scanTenant(r) })
}

// lockTenant locks live tenant id for the change in tx.
func lockTenant(ctx context.Context, tx pgx.Tx, id string) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM portcullis_tenants WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoTenant
	}
	return err
}

// DeleteTenant deletes store tenant id: its memberships end and every key
// bound to it is deleted. It returns how many keys were.
func (s *Store) DeleteTenant(ctx context.Context, id, by string) (int, int64, error) {
	var revoked int
	v, err := s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		if err := lockTenant(ctx, tx, id); err != nil {
			return nil, err
		}
		var log []logged
		users, err := collect(tx.Query(ctx, `UPDATE portcullis_members SET removed = true, version = $2
			WHERE tenant = $1 AND NOT removed RETURNING user_id`, id, v))
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			log = append(log, logged{"member", id + "/" + u, "delete"})
		}
		ids, err := collect(tx.Query(ctx, `UPDATE portcullis_keys SET revoked_at = now(), version = $2
			WHERE tenant = $1 AND revoked_at IS NULL RETURNING id`, id, v))
		if err != nil {
			return nil, err
		}
		for _, k := range ids {
			log = append(log, logged{"key", k, "delete"})
		}
		revoked = len(ids)
		if _, err := tx.Exec(ctx, "DELETE FROM portcullis_tenant_names WHERE tenant = $1", id); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, "UPDATE portcullis_tenants SET deleted_at = now(), version = $2 WHERE id = $1", id, v); err != nil {
			return nil, err
		}
		return append(log, logged{"tenant", id, "delete"}), nil
	})
	return revoked, v, err
}

func collect(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// PutMember makes user a member of store tenant with role (or changes
// their role), and reports whether they were not a member before.
func (s *Store) PutMember(ctx context.Context, tenant, user, role, by string, taken Names) (bool, int64, error) {
	var created bool
	v, err := s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		if err := lockTenant(ctx, tx, tenant); err != nil {
			return nil, err
		}
		if err := userFree(ctx, tx, []string{user}, taken); err != nil {
			return nil, err
		}
		err := tx.QueryRow(ctx, `INSERT INTO portcullis_members (tenant, user_id, role, version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant, user_id) DO UPDATE SET role = $3, version = $4, removed = false,
				added_at = CASE WHEN portcullis_members.removed THEN now() ELSE portcullis_members.added_at END
			RETURNING (xmax = 0) OR added_at = now()`, tenant, user, role, v).Scan(&created)
		if err != nil {
			return nil, err
		}
		return []logged{{"member", tenant + "/" + user, "put"}}, nil
	})
	return created, v, err
}

// DeleteMember ends user's membership of store tenant.
func (s *Store) DeleteMember(ctx context.Context, tenant, user, by string) (int64, error) {
	return s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		if err := lockTenant(ctx, tx, tenant); err != nil {
			return nil, err
		}
		tag, err := tx.Exec(ctx, `UPDATE portcullis_members SET removed = true, version = $3
			WHERE tenant = $1 AND user_id = $2 AND NOT removed`, tenant, user, v)
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, ErrNotMember
		}
		return []logged{{"member", tenant + "/" + user, "delete"}}, nil
	})
}

// Replaced says what a ReplaceMembers did.
type Replaced struct {
	Added, Removed, Changed int
	Version                 int64
}

// ReplaceMembers makes members the whole member list of store tenant, in
// one change: those not listed end, those listed join or take their role.
func (s *Store) ReplaceMembers(ctx context.Context, tenant string, members []directory.Member, by string, taken Names) (Replaced, error) {
	var out Replaced
	v, err := s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		if err := lockTenant(ctx, tx, tenant); err != nil {
			return nil, err
		}
		rows, err := tx.Query(ctx, "SELECT user_id, role FROM portcullis_members WHERE tenant = $1 AND NOT removed", tenant)
		if err != nil {
			return nil, err
		}
		now := map[string]string{}
		var user, role string
		_, err = pgx.ForEachRow(rows, []any{&user, &role}, func() error { now[user] = role; return nil })
		if err != nil {
			return nil, err
		}
		want := make(map[string]string, len(members))
		var put, putRoles, gone []string
		for _, m := range members {
			want[m.User] = m.Role
			old, was := now[m.User]
			switch {
			case !was:
				out.Added++
			case old != m.Role:
				out.Changed++
			default:
				continue
			}
			put, putRoles = append(put, m.User), append(putRoles, m.Role)
		}
		for u := range now {
			if _, stays := want[u]; !stays {
				gone = append(gone, u)
			}
		}
		out.Removed = len(gone)
		if err := userFree(ctx, tx, put, taken); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE portcullis_members SET removed = true, version = $3
			WHERE tenant = $1 AND user_id = ANY($2) AND NOT removed`, tenant, gone, v); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO portcullis_members (tenant, user_id, role, version)
			SELECT $1, u, r, $4 FROM unnest($2::text[], $3::text[]) AS m(u, r)
			ON CONFLICT (tenant, user_id) DO UPDATE SET role = excluded.role, version = $4, removed = false,
				added_at = CASE WHEN portcullis_members.removed THEN now() ELSE portcullis_members.added_at END`,
			tenant, put, putRoles, v); err != nil {
			return nil, err
		}
		log := make([]logged, 0, len(put)+len(gone))
		for _, u := range put {
			log = append(log, logged{"member", tenant + "/" + u, "put"})
		}
		for _, u := range gone {
			log = append(log, logged{"member", tenant + "/" + u, "delete"})
		}
		return log, nil
	})
	out.Version = v
	return out, err
}

// ListMembers returns up to limit members of store tenant by user id,
// after the id after.
func (s *Store) ListMembers(ctx context.Context, tenant, after string, limit int) ([]directory.Member, error) {
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT tenant, user_id, role FROM portcullis_members WHERE tenant = $1 AND NOT removed
		AND user_id > $2 ORDER BY user_id LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[directory.Member])
}

// UserState returns whether user is disabled and their store memberships.
func (s *Store) UserState(ctx context.Context, user string) (bool, []directory.Member, error) {
	var disabled bool
	err := s.pool.QueryRow(ctx, "SELECT disabled FROM portcullis_users WHERE id = $1", user).Scan(&disabled)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT m.tenant, m.user_id, m.role FROM portcullis_members m JOIN portcullis_tenants t ON t.id = m.tenant
		WHERE m.user_id = $1 AND NOT m.removed AND t.deleted_at IS NULL ORDER BY m.tenant`, user)
	if err != nil {
		return false, nil, err
	}
	ms, err := pgx.CollectRows(rows, pgx.RowToStructByPos[directory.Member])
	return disabled, ms, err
}

// PutUser records whether user is disabled.
func (s *Store) PutUser(ctx context.Context, user string, disabled bool, by string, taken Names) (int64, error) {
	return s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		if err := userFree(ctx, tx, []string{user}, taken); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO portcullis_users (id, disabled, version) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET disabled = $2, version = $3`, user, disabled, v); err != nil {
			return nil, err
		}
		op := "enable"
		if disabled {
			op = "disable"
		}
		return []logged{{"user", user, op}}, nil
	})
}

// loadDirectory reads the whole directory of tx's snapshot into a Table.
func loadDirectory(ctx context.Context, tx pgx.Tx) (*directory.Table, error) {
	var tenants, members, users int
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM portcullis_tenants WHERE deleted_at IS NULL),
		(SELECT count(*) FROM portcullis_members WHERE NOT removed), (SELECT count(*) FROM portcullis_users WHERE disabled)`).
		Scan(&tenants, &members, &users); err != nil {
		return nil, err
	}
	b := directory.NewBuilder(tenants, members, users)
	rows, err := tx.Query(ctx, "SELECT "+tenantColumns+" FROM portcullis_tenants WHERE deleted_at IS NULL")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		b.Tenant(t.Tenant)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var m directory.Member
	rows, err = tx.Query(ctx, "SELECT tenant, user_id, role FROM portcullis_members WHERE NOT removed")
	if err != nil {
		return nil, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&m.Tenant, &m.User, &m.Role}, func() error { b.Member(m); return nil }); err != nil {
		return nil, err
	}
	var u directory.User
	rows, err = tx.Query(ctx, "SELECT id, disabled FROM portcullis_users WHERE disabled")
	if err != nil {
		return nil, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&u.ID, &u.Disabled}, func() error { b.User(u); return nil }); err != nil {
		return nil, err
	}
	return b.Build(), nil
}

// directoryChanges reads the directory's changes of the versions after
// from up to to: tenants changed (whole) or deleted, memberships put or
// ended (an empty role), user states.
func directoryChanges(ctx context.Context, tx pgx.Tx, from, to int64) (directory.Changes, error) {
	var c directory.Changes
	rows, err := tx.Query(ctx, "SELECT "+tenantColumns+", deleted_at IS NOT NULL FROM portcullis_tenants WHERE version > $1 AND version <= $2 ORDER BY version", from, to)
	if err != nil {
		return c, err
	}
	for rows.Next() {
		var t Tenant
		var deleted bool
		if err := rows.Scan(&t.ID, &t.DisplayName, &t.Aliases, &t.Disabled, &t.Plan, &t.CreatedAt, &t.Version, &deleted); err != nil {
			rows.Close()
			return c, err
		}
		if deleted {
			c.Deleted = append(c.Deleted, t.ID)
			continue
		}
		dt := t.Tenant
		dt.CreatedAt = dt.CreatedAt.UTC()
		c.Tenants = append(c.Tenants, dt)
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	var m directory.Member
	var removed bool
	rows, err = tx.Query(ctx, "SELECT tenant, user_id, role, removed FROM portcullis_members WHERE version > $1 AND version <= $2 ORDER BY version", from, to)
	if err != nil {
		return c, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&m.Tenant, &m.User, &m.Role, &removed}, func() error {
		if removed {
			m.Role = ""
		}
		c.Members = append(c.Members, m)
		return nil
	}); err != nil {
		return c, err
	}
	var u directory.User
	rows, err = tx.Query(ctx, "SELECT id, disabled FROM portcullis_users WHERE version > $1 AND version <= $2", from, to)
	if err != nil {
		return c, err
	}
	_, err = pgx.ForEachRow(rows, []any{&u.ID, &u.Disabled}, func() error { c.Users = append(c.Users, u); return nil })
	return c, err
}
