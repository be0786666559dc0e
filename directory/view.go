package directory

// This file holds the View: a Table with Layers of changes on top, what a
// replica's mirror publishes after each batch of changes, so that a change
// costs its own size, not the directory's.

import (
	"maps"
	"slices"
	"strings"
)

// Changes is one batch of changes to apply, as the store's change log
// gives them: tenants created or changed (whole), tenants deleted (their
// memberships go with them), memberships added, changed or ended (Role
// ""), user states.
type Changes struct {
	Tenants []Tenant
	Deleted []string
	Members []Member
	Users   []User
}

// Len returns how many changes c holds.
func (c Changes) Len() int { return len(c.Tenants) + len(c.Deleted) + len(c.Members) + len(c.Users) }

type pair struct{ tenant, user string }

// Layer is one batch of changes on top of a Table. A Layer is immutable
// once made; With makes a new one.
type Layer struct {
	tenants map[string]*Tenant // by id; nil: deleted
	names   map[string]string  // name → tenant id; "": names no tenant now
	members map[pair]string    // role; "": not a member
	users   map[string]User
	byUser  map[string]map[string]string // user → tenant → role (""): memberships this layer changed
}

// NewLayer returns an empty Layer.
func NewLayer() *Layer {
	return &Layer{tenants: map[string]*Tenant{}, names: map[string]string{}, members: map[pair]string{},
		users: map[string]User{}, byUser: map[string]map[string]string{}}
}

// Len returns how many tenants, memberships and users the layer changes.
func (l *Layer) Len() int { return len(l.tenants) + len(l.members) + len(l.users) }

// With returns a copy of l with c applied on top; below is the set l sits
// on (the view without l), which says what a changed tenant was called
// before and which memberships a deleted tenant had. l is unchanged.
func (l *Layer) With(c Changes, below Set) *Layer {
	n := &Layer{tenants: maps.Clone(l.tenants), names: maps.Clone(l.names), members: maps.Clone(l.members),
		users: maps.Clone(l.users), byUser: make(map[string]map[string]string, len(l.byUser))}
	for u, m := range l.byUser {
		n.byUser[u] = maps.Clone(m)
	}
	// What the view says now, this layer included.
	now := &View{base: nil, layers: []*Layer{n}, under: below}
	unname := func(id string) {
		if old, ok := now.Tenant(id); ok {
			n.names[old.ID] = ""
			for _, a := range old.Aliases {
				n.names[a] = ""
			}
		}
	}
	for _, id := range c.Deleted {
		for _, m := range now.membersOf(id) {
			n.setMember(id, m, "")
		}
		unname(id)
		n.tenants[id] = nil
	}
	for i := range c.Tenants {
		t := c.Tenants[i]
		t.Aliases = slices.Clone(t.Aliases)
		unname(t.ID)
		n.tenants[t.ID] = &t
		n.names[t.ID] = t.ID
		for _, a := range t.Aliases {
			n.names[a] = t.ID
		}
	}
	for _, m := range c.Members {
		n.setMember(m.Tenant, m.User, m.Role)
	}
	for _, u := range c.Users {
		n.users[u.ID] = u
	}
	return n
}

func (l *Layer) setMember(tenant, user, role string) {
	l.members[pair{tenant, user}] = role
	m := l.byUser[user]
	if m == nil {
		m = map[string]string{}
		l.byUser[user] = m
	}
	m[tenant] = role
}

// View is a Table with a few Layers of changes on top, newest last. It is
// immutable and safe for concurrent use.
type View struct {
	base   *Table
	layers []*Layer
	// under, when set, stands in for base (a Layer being built asks the
	// view below it).
	under Set
}

// NewView returns the view of base with layers on top (oldest first).
func NewView(base *Table, layers ...*Layer) *View { return &View{base: base, layers: layers} }

// Base returns the view's table and Layers its layers, oldest first.
func (v *View) Base() *Table     { return v.base }
func (v *View) Layers() []*Layer { return v.layers }

func (v *View) bottom() Set {
	if v.under != nil {
		return v.under
	}
	return v.base
}

// Resolve returns the id of the tenant named name (its id or an alias).
func (v *View) Resolve(name string) (string, bool) {
	if v == nil {
		return "", false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if id, ok := v.layers[i].names[name]; ok {
			return id, id != ""
		}
	}
	if b := v.bottom(); b != nil {
		return b.Resolve(name)
	}
	return "", false
}

// State returns whether tenant id exists and is disabled, and its plan.
func (v *View) State(id string) (bool, string, bool) {
	if v == nil {
		return false, "", false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if t, ok := v.layers[i].tenants[id]; ok {
			if t == nil {
				return false, "", false
			}
			return t.Disabled, t.Plan, true
		}
	}
	if b := v.bottom(); b != nil {
		return b.State(id)
	}
	return false, "", false
}

// Tenant returns tenant id whole.
func (v *View) Tenant(id string) (Tenant, bool) {
	if v == nil {
		return Tenant{}, false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if t, ok := v.layers[i].tenants[id]; ok {
			if t == nil {
				return Tenant{}, false
			}
			out := *t
			out.Aliases = slices.Clone(t.Aliases)
			return out, true
		}
	}
	if b := v.bottom(); b != nil {
		return b.Tenant(id)
	}
	return Tenant{}, false
}

// Role returns user's role in tenant id.
func (v *View) Role(tenant, user string) (string, bool) {
	if v == nil {
		return "", false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if role, ok := v.layers[i].members[pair{tenant, user}]; ok {
			return role, role != ""
		}
	}
	if b := v.bottom(); b != nil {
		return b.Role(tenant, user)
	}
	return "", false
}

// UserDisabled reports whether user is disabled.
func (v *View) UserDisabled(user string) bool {
	if v == nil {
		return false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if u, ok := v.layers[i].users[user]; ok {
			return u.Disabled
		}
	}
	if b := v.bottom(); b != nil {
		return b.UserDisabled(user)
	}
	return false
}

// Known reports whether the view knows user.
func (v *View) Known(user string) bool {
	if v == nil {
		return false
	}
	for _, l := range v.layers {
		if _, ok := l.users[user]; ok {
			return true
		}
		for _, role := range l.byUser[user] {
			if role != "" {
				return true
			}
		}
	}
	if b := v.bottom(); b != nil {
		return b.Known(user)
	}
	return false
}

// TenantsOf returns user's memberships, by tenant id.
func (v *View) TenantsOf(user string) []Member {
	if v == nil {
		return nil
	}
	roles := map[string]string{}
	if b := v.bottom(); b != nil {
		for _, m := range b.TenantsOf(user) {
			roles[m.Tenant] = m.Role
		}
	}
	for _, l := range v.layers {
		maps.Copy(roles, l.byUser[user])
	}
	var out []Member
	for t, role := range roles {
		if role != "" {
			out = append(out, Member{Tenant: t, User: user, Role: role})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Tenant, b.Tenant) })
	return out
}

// membersOf returns the users who are members of tenant id (for a tenant's
// deletion: slow, rare).
func (v *View) membersOf(id string) []string {
	users := map[string]bool{}
	var walk func(s Set)
	walk = func(s Set) {
		switch s := s.(type) {
		case *Table:
			if s == nil {
				return
			}
			t := s.tenantNumber(id)
			if t < 0 {
				return
			}
			for _, m := range s.members {
				if m.tenant == t {
					users[s.str(s.users[m.user].id)] = true
				}
			}
		case *View:
			if s == nil {
				return
			}
			walk(s.bottom())
			for _, l := range s.layers {
				for p, role := range l.members {
					if p.tenant == id {
						users[p.user] = role != ""
					}
				}
			}
		}
	}
	walk(v)
	var out []string
	for u, in := range users {
		if in {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// Merge folds the view's layers into a new Table (the work of a
// background goroutine, off the check path).
func (v *View) Merge() *Table {
	tenants, members, users := v.base.Counts()
	b := NewBuilder(tenants, members, users)
	top := NewLayer()
	for _, l := range v.layers {
		maps.Copy(top.tenants, l.tenants)
		maps.Copy(top.members, l.members)
		maps.Copy(top.users, l.users)
	}
	v.base.each(func(t Tenant) {
		if _, changed := top.tenants[t.ID]; !changed {
			b.Tenant(t)
		}
	}, nil, nil)
	for _, id := range slices.Sorted(maps.Keys(top.tenants)) {
		if t := top.tenants[id]; t != nil {
			b.Tenant(*t)
		}
	}
	v.base.each(nil, func(m Member) {
		if _, changed := top.members[pair{m.Tenant, m.User}]; !changed {
			if t, gone := top.tenants[m.Tenant]; !gone || t != nil {
				b.Member(m)
			}
		}
	}, func(u User) {
		if _, changed := top.users[u.ID]; !changed && u.Disabled {
			b.User(u)
		}
	})
	for p, role := range top.members {
		if role != "" {
			b.Member(Member{Tenant: p.tenant, User: p.user, Role: role})
		}
	}
	for _, u := range top.users {
		b.User(u)
	}
	return b.Build()
}
