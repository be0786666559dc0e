package directory

// This file holds the immutable Table: tenants, their names, users and
// memberships in pointer-free arrays behind open-addressing tables.

import (
	"hash/maphash"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// Tenant is a tenant as the directory holds it.
type Tenant struct {
	ID          string
	DisplayName string
	Aliases     []string
	Disabled    bool
	Plan        string // "" for the policy's default plan
	CreatedAt   time.Time
}

// Member is one membership: User is a member of Tenant with Role.
type Member struct{ Tenant, User, Role string }

// User is one user's state.
type User struct {
	ID       string
	Disabled bool
}

// Set is what checks and the key API read of the directory.
// Implementations are immutable and safe for concurrent use; strings they
// return must not be modified.
type Set interface {
	// Resolve returns the id of the tenant named name (its id or an alias).
	Resolve(name string) (string, bool)
	// State returns whether tenant id exists and is disabled, and its plan.
	State(id string) (disabled bool, plan string, ok bool)
	// Tenant returns tenant id whole (it allocates: for the API).
	Tenant(id string) (Tenant, bool)
	// Role returns user's role in tenant id, if a member.
	Role(tenant, user string) (string, bool)
	// UserDisabled reports whether user is disabled.
	UserDisabled(user string) bool
	// TenantsOf returns user's memberships, by tenant id.
	TenantsOf(user string) []Member
	// Known reports whether id names a user the directory knows (a member
	// of a tenant, or a user with a state).
	Known(user string) bool
}

var (
	_, _ Set = (*Table)(nil), (*View)(nil)
	seed     = maphash.MakeSeed()
)

// span is a string in the text arena.
type span struct{ off, len uint32 }

type tenantRec struct {
	id, display, aliases span // aliases: "\x00"-separated
	created              int64
	plan                 uint16 // in plans
	disabled             bool
}

type nameRec struct {
	name   span
	tenant int32
}

type userRec struct {
	id       span
	disabled bool
}

type memberRec struct {
	tenant, user int32
	role         uint16 // in roles
}

// Table is the directory at one moment. It is immutable once built and safe
// for concurrent use: nothing in it is a pointer per tenant, user or
// membership, so a million of them cost the collector nothing.
type Table struct {
	text      []byte // never modified once written: strings handed out point into it
	tenants   []tenantRec
	names     []nameRec // every tenant's id and aliases
	nslots    []int32   // 1 + index in names; 0 empty
	users     []userRec
	uslots    []int32
	members   []memberRec
	mslots    []int32
	byUser    []int32 // member numbers grouped by user
	userStart []int32 // user u's members are byUser[userStart[u]:userStart[u+1]]
	roles     []string
	plans     []string
}

func (x *Table) str(s span) string {
	if s.len == 0 {
		return ""
	}
	return unsafe.String(&x.text[s.off], int(s.len))
}

func hashOf(s string) uint64 { return maphash.String(seed, s) }

// pairHash is the hash of a membership (tenant, user).
func pairHash(tenant, user string) uint64 {
	h := hashOf(tenant)
	return (h<<17 | h>>47) ^ hashOf(user)*0x9e3779b97f4a7c15
}

// findName returns the index in names of name, or -1.
func (x *Table) findName(name string) int32 {
	if x == nil || len(x.nslots) == 0 {
		return -1
	}
	mask := uint64(len(x.nslots) - 1)
	for h := hashOf(name) & mask; ; h = (h + 1) & mask {
		v := x.nslots[h]
		if v == 0 {
			return -1
		}
		if x.str(x.names[v-1].name) == name {
			return v - 1
		}
	}
}

// findUser returns the number of user, or -1.
func (x *Table) findUser(user string) int32 {
	if x == nil || len(x.uslots) == 0 {
		return -1
	}
	mask := uint64(len(x.uslots) - 1)
	for h := hashOf(user) & mask; ; h = (h + 1) & mask {
		v := x.uslots[h]
		if v == 0 {
			return -1
		}
		if x.str(x.users[v-1].id) == user {
			return v - 1
		}
	}
}

// findMember returns the number of the membership (tenant, user), or -1.
func (x *Table) findMember(tenant, user string) int32 {
	if x == nil || len(x.mslots) == 0 {
		return -1
	}
	mask := uint64(len(x.mslots) - 1)
	for h := pairHash(tenant, user) & mask; ; h = (h + 1) & mask {
		v := x.mslots[h]
		if v == 0 {
			return -1
		}
		m := &x.members[v-1]
		if x.str(x.users[m.user].id) == user && x.str(x.tenants[m.tenant].id) == tenant {
			return v - 1
		}
	}
}

// tenantNumber returns the number of tenant id (not an alias), or -1.
func (x *Table) tenantNumber(id string) int32 {
	i := x.findName(id)
	if i < 0 {
		return -1
	}
	t := x.names[i].tenant
	if x.str(x.tenants[t].id) != id {
		return -1 // an alias
	}
	return t
}

// Resolve returns the id of the tenant named name (its id or an alias).
func (x *Table) Resolve(name string) (string, bool) {
	i := x.findName(name)
	if i < 0 {
		return "", false
	}
	return x.str(x.tenants[x.names[i].tenant].id), true
}

// State returns whether tenant id exists and is disabled, and its plan.
func (x *Table) State(id string) (bool, string, bool) {
	t := x.tenantNumber(id)
	if t < 0 {
		return false, "", false
	}
	r := &x.tenants[t]
	return r.disabled, x.plans[r.plan], true
}

// Tenant returns tenant id whole.
func (x *Table) Tenant(id string) (Tenant, bool) {
	t := x.tenantNumber(id)
	if t < 0 {
		return Tenant{}, false
	}
	return x.tenant(t), true
}

func (x *Table) tenant(t int32) Tenant {
	r := &x.tenants[t]
	out := Tenant{ID: x.str(r.id), DisplayName: x.str(r.display), Disabled: r.disabled, Plan: x.plans[r.plan]}
	if r.created != 0 {
		out.CreatedAt = time.UnixMilli(r.created).UTC()
	}
	if a := x.str(r.aliases); a != "" {
		out.Aliases = strings.Split(a, "\x00")
	}
	return out
}

// Role returns user's role in tenant id.
func (x *Table) Role(tenant, user string) (string, bool) {
	m := x.findMember(tenant, user)
	if m < 0 {
		return "", false
	}
	return x.roles[x.members[m].role], true
}

// UserDisabled reports whether user is disabled.
func (x *Table) UserDisabled(user string) bool {
	u := x.findUser(user)
	return u >= 0 && x.users[u].disabled
}

// Known reports whether the table knows user.
func (x *Table) Known(user string) bool { return x.findUser(user) >= 0 }

// TenantsOf returns user's memberships, by tenant id.
func (x *Table) TenantsOf(user string) []Member {
	u := x.findUser(user)
	if u < 0 {
		return nil
	}
	var out []Member
	for _, m := range x.byUser[x.userStart[u]:x.userStart[u+1]] {
		r := &x.members[m]
		out = append(out, Member{Tenant: x.str(x.tenants[r.tenant].id), User: user, Role: x.roles[r.role]})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Tenant, b.Tenant) })
	return out
}

// Counts returns how many tenants, memberships and users the table holds.
func (x *Table) Counts() (tenants, members, users int) {
	if x == nil {
		return 0, 0, 0
	}
	return len(x.tenants), len(x.members), len(x.users)
}

// each calls the functions (nil: none) with every tenant, membership and
// user state.
func (x *Table) each(tenant func(Tenant), member func(Member), user func(User)) {
	if x == nil {
		return
	}
	for i := range x.tenants {
		if tenant != nil {
			tenant(x.tenant(int32(i)))
		}
	}
	for _, m := range x.members {
		if member != nil {
			member(Member{Tenant: x.str(x.tenants[m.tenant].id), User: x.str(x.users[m.user].id), Role: x.roles[m.role]})
		}
	}
	for _, u := range x.users {
		if user != nil {
			user(User{ID: x.str(u.id), Disabled: u.disabled})
		}
	}
}

// Builder makes a Table. It is not safe for concurrent use.
type Builder struct {
	x       *Table
	tenants map[string]int32
	users   map[string]int32
	roles   map[string]uint16
	plans   map[string]uint16
}

// NewBuilder returns a Builder sized for about the numbers given.
func NewBuilder(tenants, members, users int) *Builder {
	x := &Table{text: make([]byte, 0, 16*(tenants+users)), tenants: make([]tenantRec, 0, tenants),
		members: make([]memberRec, 0, members), users: make([]userRec, 0, users), roles: []string{""}, plans: []string{""}}
	return &Builder{x: x, tenants: make(map[string]int32, tenants), users: make(map[string]int32, users),
		roles: map[string]uint16{"": 0}, plans: map[string]uint16{"": 0}}
}

func (b *Builder) text(s string) span {
	if s == "" {
		return span{}
	}
	off := len(b.x.text)
	b.x.text = append(b.x.text, s...)
	return span{uint32(off), uint32(len(s))}
}

func (b *Builder) user(id string) int32 {
	if u, ok := b.users[id]; ok {
		return u
	}
	u := int32(len(b.x.users))
	b.x.users = append(b.x.users, userRec{id: b.text(id)})
	b.users[id] = u
	return u
}

func intern(m map[string]uint16, list *[]string, s string) uint16 {
	if n, ok := m[s]; ok {
		return n
	}
	n := uint16(len(*list))
	*list = append(*list, s)
	m[s] = n
	return n
}

// Tenant adds t; a tenant added again replaces the first.
func (b *Builder) Tenant(t Tenant) {
	r := tenantRec{id: b.text(t.ID), display: b.text(t.DisplayName), aliases: b.text(strings.Join(t.Aliases, "\x00")),
		plan: intern(b.plans, &b.x.plans, t.Plan), disabled: t.Disabled}
	if !t.CreatedAt.IsZero() {
		r.created = t.CreatedAt.UnixMilli()
	}
	if n, ok := b.tenants[t.ID]; ok {
		b.x.tenants[n] = r
		return
	}
	b.tenants[t.ID] = int32(len(b.x.tenants))
	b.x.tenants = append(b.x.tenants, r)
}

// Member adds m and reports whether its tenant was added before (a
// membership of no tenant is left out). A membership added again replaces
// the first.
func (b *Builder) Member(m Member) bool {
	t, ok := b.tenants[m.Tenant]
	if !ok {
		return false
	}
	b.x.members = append(b.x.members, memberRec{tenant: t, user: b.user(m.User), role: intern(b.roles, &b.x.roles, m.Role)})
	return true
}

// User records u's state.
func (b *Builder) User(u User) { b.x.users[b.user(u.ID)].disabled = u.Disabled }

// Build returns the Table; the Builder may not be used again.
func (b *Builder) Build() *Table {
	x := b.x
	x.text = slices.Clip(x.text)
	for i := range x.tenants {
		r := &x.tenants[i]
		x.names = append(x.names, nameRec{name: r.id, tenant: int32(i)})
		if a := x.str(r.aliases); a != "" {
			off := r.aliases.off
			for _, alias := range strings.Split(a, "\x00") {
				x.names = append(x.names, nameRec{name: span{off, uint32(len(alias))}, tenant: int32(i)})
				off += uint32(len(alias)) + 1
			}
		}
	}
	x.nslots = table(len(x.names), func(i int) uint64 { return hashOf(x.str(x.names[i].name)) })
	x.uslots = table(len(x.users), func(i int) uint64 { return hashOf(x.str(x.users[i].id)) })
	// A membership added twice: the last one counts.
	x.members = dedupe(x.members)
	x.mslots = table(len(x.members), func(i int) uint64 {
		m := &x.members[i]
		return pairHash(x.str(x.tenants[m.tenant].id), x.str(x.users[m.user].id))
	})
	x.userStart = make([]int32, len(x.users)+1)
	for _, m := range x.members {
		x.userStart[m.user+1]++
	}
	for u := range x.users {
		x.userStart[u+1] += x.userStart[u]
	}
	x.byUser = make([]int32, len(x.members))
	next := slices.Clone(x.userStart[:len(x.users)])
	for i, m := range x.members {
		x.byUser[next[m.user]] = int32(i)
		next[m.user]++
	}
	b.x = nil
	return x
}

// dedupe keeps the last of each (tenant, user) pair, in order.
func dedupe(ms []memberRec) []memberRec {
	seen := make(map[[2]int32]int, len(ms))
	out := ms[:0]
	for _, m := range ms {
		k := [2]int32{m.tenant, m.user}
		if i, ok := seen[k]; ok {
			out[i] = m
			continue
		}
		seen[k] = len(out)
		out = append(out, m)
	}
	return slices.Clip(out)
}

// table returns an open-addressing table for n entries (at most half
// full) whose hashes hash gives: slot values are 1 + the entry's number.
func table(n int, hash func(int) uint64) []int32 {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	slots := make([]int32, size)
	mask := uint64(size - 1)
	for i := range n {
		h := hash(i) & mask
		for slots[h] != 0 {
			h = (h + 1) & mask
		}
		slots[h] = int32(i) + 1
	}
	return slots
}
