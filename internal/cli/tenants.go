package cli

// This file holds `portcullis tenants import`: a policy's tenants and
// members copied into the key store's directory.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/portcullis/portcullis/store"
)

const tenantsUsage = `usage: portcullis tenants import --policy FILE

Copies the policy's tenants (names, aliases, plans) and their members (with
their roles) into the directory of the key store the policy names (its DSN
in the environment variable keys_store.postgres.dsn_env), one tenant at a
time, each with its whole member list in one change. Safe to run again: a
tenant already there takes the policy's aliases and member list.

Run it with the policy that still lists the tenants, then serve a policy
without them (with directory: {store: true}): a store tenant may not share
a name with a policy tenant. Exit 0 done, 1 the store refused or cannot be
reached, 2 on a usage error.

flags:
`

// Tenants is `portcullis tenants`.
func Tenants(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	snap, code := storeCommand("tenants", "import", "policy whose tenants and members to copy into its key store", tenantsUsage,
		": the directory lives in the key store", args, stdout, stderr)
	if snap == nil {
		return code
	}
	st, closeStore, err := openStore(snap)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis tenants import: %v\n", err)
		return ExitFailed
	}
	defer closeStore()
	if _, err := store.Migrate(ctx, st.Pool()); err != nil {
		fmt.Fprintf(stderr, "portcullis tenants import: %v\n", err)
		return ExitFailed
	}
	dir := snap.Tenants(nil)
	by := "cli:tenants-import"
	for _, id := range dir.PolicyTenantNames() {
		aliases, _ := dir.PolicyTenant(id)
		if aliases == nil {
			aliases = []string{}
		}
		// The policy's own names do not stand in the way: they are what is
		// being moved.
		plan := dir.PolicyPlan(id)
		_, created, err := st.PutTenant(ctx, id, store.TenantPut{Aliases: &aliases, Plan: &plan}, by, store.Names{}, time.Now().UTC().Truncate(time.Millisecond))
		if err != nil {
			fmt.Fprintf(stderr, "portcullis tenants import: tenant %q: %v\n", id, err)
			return ExitFailed
		}
		rep, err := st.ReplaceMembers(ctx, id, dir.PolicyMembers(id), by, store.Names{})
		if err != nil {
			fmt.Fprintf(stderr, "portcullis tenants import: tenant %q's members: %v\n", id, err)
			return ExitFailed
		}
		what := "updated"
		if created {
			what = "created"
		}
		fmt.Fprintf(stdout, "%s: %s; members: %d added, %d removed, %d changed (version %d)\n", id, what, rep.Added, rep.Removed, rep.Changed, rep.Version)
	}
	return ExitOK
}
