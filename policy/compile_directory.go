package policy

// This file compiles the directory: whether tenants, members and user
// states also live in the store, the roles members hold, and the role of a
// member written without one.

import (
	"fmt"
	"regexp"
)

// role is one role of the policy: the highest tier a member holding it
// reaches in the tenant (nil: no cap), and whether it manages every key
// bound to the tenant.
type role struct {
	name       string
	maxTier    *tier
	manageKeys bool
}

// directoryConf is the policy's directory block.
type directoryConf struct {
	store       bool             // tenants, members and users also live in the store
	roles       map[string]*role // nil: no roles, no caps
	defaultRole string
}

var roleNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

func (c *compiler) directory(f *policyFile) {
	d := &c.s.dir
	if df := f.Directory; df != nil {
		d.store = df.Store
		if df.Store && f.KeysStore == nil {
			c.errf("directory.store", "the directory in the store needs keys_store (the same PostgreSQL)")
		}
		if len(df.Roles) > 0 {
			d.roles = map[string]*role{}
		}
		for _, name := range sortedKeys(df.Roles) {
			rf, p := df.Roles[name], "directory.roles."+name
			if !roleNameRe.MatchString(name) {
				c.errf(p, "a role name is 1-64 lower-case letters, digits, _ and -, starting with a letter")
			}
			r := &role{name: name, manageKeys: rf.ManageKeys}
			if rf.MaxTier != "" {
				if r.maxTier = c.s.tiers.byName[rf.MaxTier]; r.maxTier == nil {
					c.errf(p+".max_tier", "unknown tier %q (%s)", rf.MaxTier, c.tierNames())
				}
			}
			d.roles[name] = r
		}
		d.defaultRole = df.DefaultRole
		switch {
		case df.DefaultRole != "" && d.roles[df.DefaultRole] == nil:
			c.errf("directory.default_role", "unknown role %q (%s)", df.DefaultRole, listing("roles", sortedKeys(d.roles)))
		case df.DefaultRole == "" && d.roles != nil:
			c.errf("directory.default_role", "name the role of members written without one (%s)", listing("roles", sortedKeys(d.roles)))
		}
	}
	for _, name := range sortedKeys(f.Tenants) {
		tn := c.s.tenants.byName[name]
		for i, m := range f.Tenants[name].Members {
			p := fmt.Sprintf("tenants.%s.members[%d]", name, i)
			switch {
			case m.Role == "":
				tn.members[m.User] = d.defaultRole
			case d.roles == nil:
				c.errf(p+".role", "role %q, but the policy defines no roles (directory.roles)", m.Role)
			case d.roles[m.Role] == nil:
				c.errf(p+".role", "unknown role %q (%s)", m.Role, listing("roles", sortedKeys(d.roles)))
			}
		}
	}
}

// roleNamed returns the policy's role name, nil when it has no such role.
func (s *Snapshot) roleNamed(name string) *role {
	if s.dir.roles == nil {
		return nil
	}
	return s.dir.roles[name]
}
