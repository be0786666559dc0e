package directory

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestRecordsHoldNoPointers: what the table stores per tenant, name, user
// and membership holds no pointer the garbage collector would follow (why
// a million memberships cost it nothing).
func TestRecordsHoldNoPointers(t *testing.T) {
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(path+"."+ty.Field(i).Name, ty.Field(i).Type)
			}
		case reflect.Array:
			walk(path+"[]", ty.Elem())
		case reflect.String, reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s is a %s: per-entry storage must hold no pointers", path, ty.Kind())
		}
	}
	walk("tenantRec", reflect.TypeFor[tenantRec]())
	walk("nameRec", reflect.TypeFor[nameRec]())
	walk("userRec", reflect.TypeFor[userRec]())
	walk("memberRec", reflect.TypeFor[memberRec]())
}

// model is the directory as plain maps: what every Set must answer.
type model struct {
	tenants map[string]Tenant
	members map[pair]string
	users   map[string]bool
}

func newModel() *model {
	return &model{tenants: map[string]Tenant{}, members: map[pair]string{}, users: map[string]bool{}}
}

func (m *model) apply(c Changes) {
	for _, id := range c.Deleted {
		delete(m.tenants, id)
		for p := range m.members {
			if p.tenant == id {
				delete(m.members, p)
			}
		}
	}
	for _, t := range c.Tenants {
		m.tenants[t.ID] = t
	}
	for _, mb := range c.Members {
		if mb.Role == "" {
			delete(m.members, pair{mb.Tenant, mb.User})
		} else {
			m.members[pair{mb.Tenant, mb.User}] = mb.Role
		}
	}
	for _, u := range c.Users {
		m.users[u.ID] = u.Disabled
	}
}

// check compares every answer of s with the model's, for every name and
// user the test ever used.
func (m *model) check(t *testing.T, what string, s Set, names, users []string) {
	t.Helper()
	for _, n := range names {
		want, wantOK := "", false
		for _, tn := range m.tenants {
			if tn.ID == n || slices.Contains(tn.Aliases, n) {
				want, wantOK = tn.ID, true
			}
		}
		if got, ok := s.Resolve(n); got != want || ok != wantOK {
			t.Fatalf("%s: Resolve(%q) = %q %v, want %q %v", what, n, got, ok, want, wantOK)
		}
		tn, exists := m.tenants[n]
		dis, plan, ok := s.State(n)
		if ok != exists || dis != tn.Disabled || plan != tn.Plan {
			t.Fatalf("%s: State(%q) = %v %q %v, want %+v %v", what, n, dis, plan, ok, tn, exists)
		}
		got, ok := s.Tenant(n)
		if ok != exists || (exists && (got.DisplayName != tn.DisplayName || !slices.Equal(got.Aliases, tn.Aliases) || !got.CreatedAt.Equal(tn.CreatedAt))) {
			t.Fatalf("%s: Tenant(%q) = %+v %v, want %+v", what, n, got, ok, tn)
		}
		for _, u := range users {
			want, wantOK := m.members[pair{n, u}]
			if got, ok := s.Role(n, u); got != want || ok != wantOK {
				t.Fatalf("%s: Role(%q, %q) = %q %v, want %q %v", what, n, u, got, ok, want, wantOK)
			}
		}
	}
	for _, u := range users {
		if got := s.UserDisabled(u); got != m.users[u] {
			t.Fatalf("%s: UserDisabled(%q) = %v", what, u, got)
		}
		var want []Member
		for p, role := range m.members {
			if p.user == u {
				want = append(want, Member{p.tenant, u, role})
			}
		}
		slices.SortFunc(want, func(a, b Member) int {
			if a.Tenant < b.Tenant {
				return -1
			}
			return 1
		})
		if got := s.TenantsOf(u); !slices.Equal(got, want) {
			t.Fatalf("%s: TenantsOf(%q) = %v, want %v", what, u, got, want)
		}
	}
}

// TestViewFollowsChanges: random batches of every kind of change (tenants
// made, renamed, given and stripped of aliases, disabled, deleted with
// their members; memberships added, changed, ended; users disabled and
// enabled), applied as layers and now and then merged into a new table,
// answer every lookup exactly as a plain model does, at every step.
func TestViewFollowsChanges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var names, users []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("org-%d", i), fmt.Sprintf("alias-%d", i))
	}
	for i := range 10 {
		users = append(users, fmt.Sprintf("u-%d", i))
	}
	roles := []string{"member", "developer", "admin"}
	m := newModel()
	b := NewBuilder(0, 0, 0)
	base := b.Build()
	v := NewView(base, NewLayer())
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for step := range 400 {
		var c Changes
		for range 1 + r.IntN(6) {
			switch r.IntN(6) {
			case 0, 1:
				i := r.IntN(12)
				tn := Tenant{ID: fmt.Sprintf("org-%d", i), DisplayName: fmt.Sprintf("Org %d/%d", i, step), Disabled: r.IntN(4) == 0,
					Plan: []string{"", "free", "pro"}[r.IntN(3)], CreatedAt: created}
				if r.IntN(2) == 0 {
					tn.Aliases = []string{fmt.Sprintf("alias-%d", i)}
				}
				c.Tenants = append(c.Tenants, tn)
			case 2:
				c.Deleted = append(c.Deleted, fmt.Sprintf("org-%d", r.IntN(12)))
			case 3, 4:
				tn := fmt.Sprintf("org-%d", r.IntN(12))
				if _, ok := m.tenants[tn]; !ok {
					continue // memberships are of existing tenants (the store's foreign key)
				}
				role := roles[r.IntN(3)]
				if r.IntN(3) == 0 {
					role = ""
				}
				c.Members = append(c.Members, Member{tn, users[r.IntN(10)], role})
			case 5:
				c.Users = append(c.Users, User{users[r.IntN(10)], r.IntN(2) == 0})
			}
			// Each change is applied in order, as the store's log is.
			m.apply(c)
			layers := v.Layers()
			top := layers[len(layers)-1]
			v = NewView(v.Base(), append(slices.Clone(layers[:len(layers)-1]), top.With(c, NewView(v.Base(), layers[:len(layers)-1]...)))...)
			c = Changes{}
		}
		m.check(t, fmt.Sprintf("step %d", step), v, names, users)
		if step%37 == 36 {
			v = NewView(v.Merge(), NewLayer())
			m.check(t, fmt.Sprintf("step %d, merged", step), v, names, users)
		}
		if step%11 == 10 {
			v = NewView(v.Base(), append(slices.Clone(v.Layers()), NewLayer())...) // a new top while a merge would run
		}
	}
}

// TestTableAtScale: a table of 100,000 tenants (each with an alias) and a
// million memberships answers a sample of lookups right.
func TestTableAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("a million memberships")
	}
	b := NewBuilder(100_000, 1_000_000, 300_000)
	for i := range 100_000 {
		b.Tenant(Tenant{ID: fmt.Sprintf("org-%d", i), Aliases: []string{fmt.Sprintf("a-%d", i)}})
	}
	for i := range 1_000_000 {
		b.Member(Member{Tenant: fmt.Sprintf("org-%d", i%100_000), User: fmt.Sprintf("u-%d", i/10), Role: []string{"member", "admin"}[i%2]})
	}
	x := b.Build()
	if tn, mb, us := x.Counts(); tn != 100_000 || mb != 1_000_000 || us != 100_000 {
		t.Fatalf("counts %d %d %d", tn, mb, us)
	}
	for _, i := range []int{0, 1, 99_999, 500_000, 999_999} {
		tenant, user := fmt.Sprintf("org-%d", i%100_000), fmt.Sprintf("u-%d", i/10)
		if role, ok := x.Role(tenant, user); !ok || role != []string{"member", "admin"}[i%2] {
			t.Errorf("Role(%s, %s) = %q %v", tenant, user, role, ok)
		}
		if id, ok := x.Resolve(fmt.Sprintf("a-%d", i%100_000)); !ok || id != tenant {
			t.Errorf("Resolve alias of %s: %q", tenant, id)
		}
	}
	if _, ok := x.Role("org-1", "u-1"); ok {
		t.Error("a membership nobody made")
	}
}
