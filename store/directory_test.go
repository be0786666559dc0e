package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

func ptr[T any](v T) *T { return &v }

// mirrored waits for version, then returns the mirror's directory.
func (e *env) mirrored(t *testing.T, version int64) directory.Set {
	t.Helper()
	e.wait(t, version)
	_, d, _ := e.mirror.View()
	return d
}

func role(d directory.Set, tenant, user string) string {
	r, ok := d.Role(tenant, user)
	if !ok {
		return "-"
	}
	return r
}

// TestDirectoryTransactions: tenants made and changed field by field,
// memberships put, changed, ended and replaced in bulk, users disabled, a
// tenant deleted with its memberships and keys: each change one version,
// each reaching the mirror in that version; a refused change (a taken
// name, a user named like a tenant, an unknown tenant or membership)
// changes nothing.
func TestDirectoryTransactions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{})
	now := time.Now().UTC().Truncate(time.Millisecond)
	policyNames := store.Names{Tenant: func(n string) bool { return n == "org-policy" }, User: func(n string) bool { return n == "u-policy" }}

	acme, created, err := e.store.PutTenant(ctx, "org-acme", store.TenantPut{DisplayName: ptr("Acme"), Aliases: ptr([]string{"acme"})}, "test", policyNames, now)
	if err != nil || !created || acme.DisplayName != "Acme" || !slices.Equal(acme.Aliases, []string{"acme"}) || !acme.CreatedAt.Equal(now) {
		t.Fatalf("create: %+v %v %v", acme, created, err)
	}
	// A change sends only what changes.
	acme, created, err = e.store.PutTenant(ctx, "org-acme", store.TenantPut{Disabled: ptr(true)}, "test", policyNames, now.Add(time.Hour))
	if err != nil || created || acme.DisplayName != "Acme" || !acme.Disabled || !acme.CreatedAt.Equal(now) {
		t.Fatalf("change: %+v %v %v", acme, created, err)
	}
	d := e.mirrored(t, acme.Version)
	if id, ok := d.Resolve("acme"); !ok || id != "org-acme" {
		t.Fatalf("alias: %q %v", id, ok)
	}
	if dis, _, ok := d.State("org-acme"); !ok || !dis {
		t.Fatal("not disabled in the mirror")
	}

	_, v, err := e.store.PutMember(ctx, "org-acme", "u-alice", "admin", "test", policyNames)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.PutTenant(ctx, "org-globex", store.TenantPut{}, "test", policyNames, now); err != nil {
		t.Fatal(err)
	}
	if role(e.mirrored(t, v), "org-acme", "u-alice") != "admin" {
		t.Fatal("membership not mirrored")
	}

	before, _ := e.store.Version(ctx)
	for name, err := range map[string]error{
		"an alias another tenant holds":       errOf(e.store.PutTenant(ctx, "org-globex", store.TenantPut{Aliases: ptr([]string{"acme"})}, "test", policyNames, now)),
		"an id another tenant's alias":        errOf(e.store.PutTenant(ctx, "acme", store.TenantPut{}, "test", policyNames, now)),
		"a policy tenant's name":              errOf(e.store.PutTenant(ctx, "org-policy", store.TenantPut{}, "test", policyNames, now)),
		"a policy member's id":                errOf(e.store.PutTenant(ctx, "u-policy", store.TenantPut{}, "test", policyNames, now)),
		"a user the directory knows":          errOf(e.store.PutTenant(ctx, "org-x", store.TenantPut{Aliases: ptr([]string{"u-alice"})}, "test", policyNames, now)),
		"a member named like a tenant":        errOf2(e.store.PutMember(ctx, "org-acme", "org-globex", "admin", "test", policyNames)),
		"a member named like an alias":        errOf2(e.store.PutMember(ctx, "org-acme", "acme", "admin", "test", policyNames)),
		"a member named like a policy tenant": errOf2(e.store.PutMember(ctx, "org-acme", "org-policy", "admin", "test", policyNames)),
		"a user named like a tenant":          errOf1(e.store.PutUser(ctx, "org-globex", true, "test", policyNames)),
	} {
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: %v, want a conflict", name, err)
		}
	}
	if err := errOf2(e.store.PutMember(ctx, "org-nobody", "u-bob", "admin", "test", policyNames)); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("a member of no tenant: %v", err)
	}
	if _, err := e.store.DeleteMember(ctx, "org-acme", "u-nobody", "test"); !errors.Is(err, store.ErrNotMember) {
		t.Errorf("ending no membership: %v", err)
	}
	if after, _ := e.store.Version(ctx); after != before {
		t.Fatalf("refused changes took versions %d to %d", before, after)
	}

	// Bulk replace: one version for the whole list.
	var list []directory.Member
	for i := range 10_000 {
		list = append(list, directory.Member{Tenant: "org-acme", User: fmt.Sprintf("u-%05d", i), Role: "member"})
	}
	list = append(list, directory.Member{Tenant: "org-acme", User: "u-alice", Role: "developer"})
	start := time.Now()
	rep, err := e.store.ReplaceMembers(ctx, "org-acme", list, "test", policyNames)
	if err != nil || rep.Added != 10_000 || rep.Changed != 1 || rep.Removed != 0 {
		t.Fatalf("replace: %+v %v", rep, err)
	}
	t.Logf("10,001 members replaced in %s", time.Since(start))
	d = e.mirrored(t, rep.Version)
	if role(d, "org-acme", "u-alice") != "developer" || role(d, "org-acme", "u-09999") != "member" {
		t.Fatal("bulk replace not mirrored")
	}
	rep, err = e.store.ReplaceMembers(ctx, "org-acme", list[5_000:], "test", policyNames)
	if err != nil || rep.Added != 0 || rep.Changed != 0 || rep.Removed != 5_000 {
		t.Fatalf("second replace: %+v %v", rep, err)
	}
	d = e.mirrored(t, rep.Version)
	if role(d, "org-acme", "u-00001") != "-" || role(d, "org-acme", "u-05000") != "member" {
		t.Fatal("removals not mirrored")
	}
	ms, err := e.store.ListMembers(ctx, "org-acme", "u-09998", 10)
	if err != nil || len(ms) != 2 || ms[0].User != "u-09999" || ms[1].User != "u-alice" {
		t.Fatalf("list after u-09998: %v %v", ms, err)
	}

	// A user disabled, a membership ended, then the tenant deleted with
	// its keys.
	v, err = e.store.PutUser(ctx, "u-alice", true, "test", policyNames)
	if err != nil || !e.mirrored(t, v).UserDisabled("u-alice") {
		t.Fatalf("disable: %v", err)
	}
	if v, err = e.store.DeleteMember(ctx, "org-acme", "u-05000", "test"); err != nil || role(e.mirrored(t, v), "org-acme", "u-05000") != "-" {
		t.Fatalf("end: %v", err)
	}
	k, err := e.store.Create(ctx, store.NewKey{ID: "acme-key", Tenant: "org-acme", User: "u-alice", Tier: "service", Label: "x",
		CreatedBy: "test", Digest: keys.DigestOf("acme-key-value"), Start: "acme", CreatedAt: now}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, k.Version)
	revoked, v, err := e.store.DeleteTenant(ctx, "org-acme", "test")
	if err != nil || revoked != 1 {
		t.Fatalf("delete: %d %v", revoked, err)
	}
	d = e.mirrored(t, v)
	if _, ok := d.Resolve("acme"); ok || role(d, "org-acme", "u-alice") != "-" || role(d, "org-acme", "u-09999") != "-" || e.found("acme-key-value") {
		t.Fatal("a deleted tenant lives on in the mirror")
	}
	if _, err := e.store.GetTenant(ctx, "org-acme"); !errors.Is(err, store.ErrNoTenant) {
		t.Fatalf("get a deleted tenant: %v", err)
	}
	// Its name is free again; made anew it has no members.
	acme, created, err = e.store.PutTenant(ctx, "org-acme", store.TenantPut{}, "test", policyNames, now.Add(2*time.Hour))
	if err != nil || !created || !acme.CreatedAt.Equal(now.Add(2*time.Hour)) || acme.DisplayName != "" {
		t.Fatalf("remade: %+v %v %v", acme, created, err)
	}
	if role(e.mirrored(t, acme.Version), "org-acme", "u-09999") != "-" {
		t.Fatal("a remade tenant got its old members back")
	}

	// Pruning removes the tombstones: a mirror whose cursor is older loads
	// everything again, and sees the same.
	if _, err := e.store.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var tombstones int
	if err := e.store.Pool().QueryRow(ctx, "SELECT (SELECT count(*) FROM portcullis_members WHERE removed) + (SELECT count(*) FROM portcullis_tenants WHERE deleted_at IS NOT NULL)").Scan(&tombstones); err != nil || tombstones != 0 {
		t.Fatalf("%d tombstones after pruning (%v)", tombstones, err)
	}
	// A mirror started now loads the same directory whole.
	fresh := newEnvOn(t, e.dsn)
	d2 := fresh.mirrored(t, acme.Version)
	for _, u := range []string{"u-alice", "u-09999", "u-05001"} {
		if role(d2, "org-acme", u) != role(e.mirrored(t, acme.Version), "org-acme", u) || d2.UserDisabled(u) != (u == "u-alice") {
			t.Errorf("a fresh load differs for %s", u)
		}
	}
	if _, ok := d2.Resolve("org-globex"); !ok {
		t.Error("a fresh load lacks org-globex")
	}
}

func errOf[T any](_ T, _ bool, err error) error { return err }
func errOf2(_ bool, _ int64, err error) error   { return err }
func errOf1(_ int64, err error) error           { return err }

// TestDirectoryChangesArePolled: with every notification lost, directory
// changes still reach the mirror by its poll.
func TestDirectoryChangesArePolled(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{Poll: 100 * time.Millisecond})
	quiet := e.store.WithoutNotify()
	if _, _, err := quiet.PutTenant(ctx, "org-q", store.TenantPut{}, "test", store.Names{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, v, err := quiet.PutMember(ctx, "org-q", "u-q", "member", "test", store.Names{})
	if err != nil {
		t.Fatal(err)
	}
	if role(e.mirrored(t, v), "org-q", "u-q") != "member" {
		t.Fatal("not polled")
	}
}
