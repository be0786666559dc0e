package policy

// This file holds the tenant step: the tenant table, the context headers
// that select a tenant, which tenant a caller acts for, and what the
// directory says of it (members, roles, disabled tenants and users). The
// policy's tenants and the store's directory (a view the check pinned, nil
// without one) are read together: a store tenant never shares a name with
// a policy tenant.

import (
	"strings"

	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// tenant is one organization of the policy.
type tenant struct {
	name    string
	members map[string]string // user → role ("" when the policy has no roles)
	plan    string            // "" for the default plan
}

// tenantTable holds the policy's tenants by canonical name, every alias
// (and name) to its canonical name, and whether users without a tenant act
// in a personal context.
type tenantTable struct {
	byName   map[string]*tenant
	aliases  map[string]string
	personal bool
}

// contextRule is one context header, and the tiers that may send it (nil:
// any tier).
type contextRule struct {
	header string
	tiers  map[string]bool
}

// canonical returns the tenant name v (a name or an alias, of the policy
// or the store) stands for, or v itself when nobody names it.
func (s *Snapshot) canonical(v string, dir directory.Set) string {
	if n, ok := s.tenants.aliases[v]; ok {
		return n
	}
	if dir != nil {
		if id, ok := dir.Resolve(v); ok {
			return id
		}
	}
	return v
}

// known reports whether name is a tenant of the policy, of the store's
// directory, or of some key (of the policy, or of the store's keys db,
// which may be nil).
func (s *Snapshot) known(name string, db keys.Set, dir directory.Set) bool {
	if _, ok := s.tenants.byName[name]; ok || s.keys.HasTenant(name) || (db != nil && db.HasTenant(name)) {
		return true
	}
	if dir != nil {
		_, _, ok := dir.State(name)
		return ok
	}
	return false
}

// tenantNamed reports whether v is the name or an alias of a tenant of the
// policy or the directory, or a tenant some key is bound to: users and
// tenants share the tenant header, so no personal context may carry such a
// value.
func (s *Snapshot) tenantNamed(v string, db keys.Set, dir directory.Set) bool {
	if _, ok := s.tenants.aliases[v]; ok || s.keys.HasTenant(v) || (db != nil && db.HasTenant(v)) {
		return true
	}
	if dir != nil {
		_, ok := dir.Resolve(v)
		return ok
	}
	return false
}

// memberRole returns user's role in tenant (canonical), and whether user is
// a member: of a policy tenant by its member list, of a store tenant by the
// directory.
func (s *Snapshot) memberRole(tenant, user string, dir directory.Set) (string, bool) {
	if user == "" {
		return "", false
	}
	if t := s.tenants.byName[tenant]; t != nil {
		r, ok := t.members[user]
		return r, ok
	}
	if dir != nil {
		return dir.Role(tenant, user)
	}
	return "", false
}

func (s *Snapshot) isMember(tenant, user string, dir directory.Set) bool {
	_, ok := s.memberRole(tenant, user, dir)
	return ok
}

// userDisabled refuses a caller whose key's user or token's subject the
// directory holds disabled: every key of theirs and every token of theirs.
func (s *Snapshot) userDisabled(c *caller) reason.Code {
	if c.dir == nil {
		return ""
	}
	if k := c.apiKey(); k != nil && k.User != "" && c.dir.UserDisabled(k.User) {
		return reason.UserDisabled
	}
	if c.token != nil && c.token.User() != "" && c.dir.UserDisabled(c.token.User()) {
		return reason.UserDisabled
	}
	return ""
}

// keyMember refuses a key bound to a tenant and a user while that user is
// no member of the tenant, whatever the request asks for (DESIGN.md §4:
// nothing a key was granted at creation outlives the membership it was
// granted under). A key bound to a tenant and no user, a customer's
// service key, depends on no membership. Membership is read live, from
// the snapshot and the directory view the check pinned.
func (s *Snapshot) keyMember(c *caller) reason.Code {
	k := c.apiKey()
	if k == nil || k.Tenant == "" || k.User == "" || s.isMember(k.Tenant, k.User, c.dir) {
		return ""
	}
	return reason.TenantNotAllowed
}

// sameTenant denies a key bound to a tenant (or user) combined with a token
// of another tenant (or user): no cross-tenant confusion.
func (s *Snapshot) sameTenant(c *caller) reason.Code {
	k, t := c.apiKey(), c.token
	if k == nil || t == nil {
		return ""
	}
	if k.User != "" && t.User() != "" && k.User != t.User() {
		return reason.TenantMismatch
	}
	switch {
	case k.Tenant == "":
		return ""
	case t.Tenant() != "":
		if s.canonical(t.Tenant(), c.dir) != k.Tenant {
			return reason.TenantMismatch
		}
	case !s.isMember(k.Tenant, t.User(), c.dir):
		return reason.TenantMismatch
	}
	return ""
}

// tenant resolves the tenant the caller acts for: the one a context header
// selects, if the caller may act for it; else the key's tenant, the token's
// tenant claim or the caller's personal context.
func (s *Snapshot) tenant(h map[string]string, c *caller) (string, string, reason.Code) {
	var name, kind string
	for _, rule := range s.contexts {
		raw, sent := h[rule.header]
		if !sent {
			continue
		}
		// Sent at all, even empty, by a tier that may not: 403.
		if rule.tiers != nil && !rule.tiers[c.tier.name] {
			return "", "", reason.ContextNotAllowed
		}
		v := strings.TrimSpace(raw)
		if v == "" {
			continue
		}
		n, k, r := s.selectTenant(v, c)
		if r != "" {
			return "", "", r
		}
		if name != "" && n != name {
			return "", "", reason.ContextConflict
		}
		name, kind = n, k
	}
	if name != "" {
		return name, kind, ""
	}
	return s.baseTenant(c)
}

func (s *Snapshot) baseTenant(c *caller) (string, string, reason.Code) {
	switch {
	case c.keyTenant() != "":
		return c.keyTenant(), KindOrganization, ""
	case c.token != nil && c.token.Tenant() != "":
		return s.canonical(c.token.Tenant(), c.dir), KindOrganization, ""
	case s.tenants.personal && c.user != "":
		if s.tenantNamed(c.user, c.db, c.dir) {
			// The user's id is a tenant's name or alias: acting "as
			// themself" would put that tenant in the tenant header.
			return "", "", reason.TenantNotAllowed
		}
		return c.user, KindPersonal, ""
	}
	return "", "", ""
}

// selectTenant checks a context header value against what the caller may
// act for: a key bound to a tenant acts for it alone; otherwise the caller's
// own user id (personal), a tenant it is a member of, its token's tenant, or
// for tiers with any_tenant, any known tenant.
func (s *Snapshot) selectTenant(v string, c *caller) (string, string, reason.Code) {
	if kt := c.keyTenant(); kt != "" {
		if s.canonical(v, c.dir) == kt {
			return kt, KindOrganization, ""
		}
		if !c.tier.anyTenant {
			return "", "", reason.TenantNotAllowed
		}
	}
	if s.tenants.personal && c.user != "" && v == c.user && !s.tenantNamed(v, c.db, c.dir) {
		return c.user, KindPersonal, ""
	}
	n := s.canonical(v, c.dir)
	if !s.known(n, c.db, c.dir) {
		return "", "", reason.TenantNotAllowed
	}
	if c.tier.anyTenant || s.isMember(n, c.user, c.dir) ||
		(c.token != nil && c.token.Tenant() != "" && s.canonical(c.token.Tenant(), c.dir) == n) {
		return n, KindOrganization, ""
	}
	return "", "", reason.TenantNotAllowed
}

// tenantState refuses acting for a disabled tenant of the directory,
// except for tiers that may act for any tenant (the platform's staff).
func (s *Snapshot) tenantState(tenant, kind string, c *caller) reason.Code {
	if c.dir == nil || kind != KindOrganization || c.tier.anyTenant {
		return ""
	}
	if disabled, _, ok := c.dir.State(tenant); ok && disabled {
		return reason.TenantDisabled
	}
	return ""
}

// role returns the role the caller holds in the tenant it acts for, when
// the policy defines roles and the caller is a member there: a personal
// context has none, nor has a key bound to a tenant and no user, nor a
// caller acting through its token's tenant claim or an any_tenant tier
// without being a member.
func (s *Snapshot) role(tenant, kind string, c *caller) *role {
	if s.dir.roles == nil || kind != KindOrganization || c.user == "" {
		return nil
	}
	name, ok := s.memberRole(tenant, c.user, c.dir)
	if !ok {
		return nil
	}
	return s.dir.roles[name]
}
