package policy

// This file holds Tenants: the policy's tenants read together with the
// store's directory, as the key-management API asks about them.

import (
	"slices"

	"github.com/portcullis/portcullis/directory"
)

// Tenants is the policy's tenants and the store's directory (a view
// pinned by the caller; nil without one) read as one: what the
// key-management API asks when it decides who may do what. It is a value,
// safe for concurrent use.
type Tenants struct {
	s   *Snapshot
	dir directory.Set
}

// Tenants returns the policy's tenants read with dir (nil: the policy's
// alone, or a policy whose directory is not in the store).
func (s *Snapshot) Tenants(dir directory.Set) Tenants {
	if !s.dir.store {
		dir = nil
	}
	return Tenants{s: s, dir: dir}
}

// Directory reports whether the policy keeps its directory in the store.
func (s *Snapshot) Directory() bool { return s.dir.store }

// Source says where tenant id lives: "policy", "store", or "" for none.
func (t Tenants) Source(id string) string {
	if _, ok := t.s.tenants.byName[id]; ok {
		return "policy"
	}
	if t.dir != nil {
		if _, _, ok := t.dir.State(id); ok {
			return "store"
		}
	}
	return ""
}

// Canonical returns the id of the tenant v names (an id or an alias, of
// the policy or the store) and whether one does.
func (t Tenants) Canonical(v string) (string, bool) {
	if n, ok := t.s.tenants.aliases[v]; ok {
		return n, true
	}
	if t.dir != nil {
		return t.dir.Resolve(v)
	}
	return "", false
}

// IsMember reports whether user is a member of tenant (an id).
func (t Tenants) IsMember(tenant, user string) bool { return t.s.isMember(tenant, user, t.dir) }

// Role returns user's role in tenant (an id), and whether they are a
// member; the role is "" when the policy defines no roles.
func (t Tenants) Role(tenant, user string) (string, bool) { return t.s.memberRole(tenant, user, t.dir) }

// ManagesKeys reports whether user's role in tenant manages every key
// bound to it (a manage_keys role).
func (t Tenants) ManagesKeys(tenant, user string) bool {
	name, ok := t.s.memberRole(tenant, user, t.dir)
	r := t.s.roleNamed(name)
	return ok && r != nil && r.manageKeys
}

// TenantsOf returns the tenants user is a member of, by id, sorted.
func (t Tenants) TenantsOf(user string) []string {
	var out []string
	for _, name := range sortedKeys(t.s.tenants.byName) {
		if t.s.isMember(name, user, nil) {
			out = append(out, name)
		}
	}
	if t.dir != nil {
		for _, m := range t.dir.TenantsOf(user) {
			out = append(out, m.Tenant)
		}
		slices.Sort(out)
	}
	return out
}

// NamesTenant reports whether v is a tenant's id or alias (policy or
// store), or a tenant the policy's keys are bound to: no user may be
// called so.
func (t Tenants) NamesTenant(v string) bool { return t.s.tenantNamed(v, nil, t.dir) }

// UserDisabled reports whether the directory holds user disabled.
func (t Tenants) UserDisabled(user string) bool { return t.dir != nil && t.dir.UserDisabled(user) }

// Disabled reports whether tenant (an id of the store) is disabled.
func (t Tenants) Disabled(tenant string) bool {
	if t.dir == nil {
		return false
	}
	disabled, _, _ := t.dir.State(tenant)
	return disabled
}

// PolicyUser reports whether id is a member of one of the policy's
// tenants: no store tenant may be called so.
func (t Tenants) PolicyUser(id string) bool {
	for _, tn := range t.s.tenants.byName {
		if _, ok := tn.members[id]; ok {
			return true
		}
	}
	return false
}

// PolicyTenant returns policy tenant id's aliases, and whether it is one.
func (t Tenants) PolicyTenant(id string) ([]string, bool) {
	if _, ok := t.s.tenants.byName[id]; !ok {
		return nil, false
	}
	var out []string
	for a, n := range t.s.tenants.aliases {
		if n == id && a != id {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out, true
}

// PolicyTenantNames returns the policy's tenants, sorted.
func (t Tenants) PolicyTenantNames() []string { return sortedKeys(t.s.tenants.byName) }

// PolicyMembers returns the members of policy tenant id with their roles,
// by user id.
func (t Tenants) PolicyMembers(id string) []directory.Member {
	tn := t.s.tenants.byName[id]
	if tn == nil {
		return nil
	}
	out := make([]directory.Member, 0, len(tn.members))
	for _, u := range sortedKeys(tn.members) {
		out = append(out, directory.Member{Tenant: id, User: u, Role: tn.members[u]})
	}
	return out
}

// Roles returns the policy's role names, sorted (none without roles), and
// the role of a member written without one.
func (s *Snapshot) Roles() ([]string, string) { return sortedKeys(s.dir.roles), s.dir.defaultRole }

// PolicyPlan returns policy tenant id's plan ("" for the default).
func (t Tenants) PolicyPlan(id string) string {
	if tn := t.s.tenants.byName[id]; tn != nil {
		return tn.plan
	}
	return ""
}
