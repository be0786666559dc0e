package keys

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestIndexRecordsHoldNoPointers: what the index stores per key has no
// pointer the garbage collector would follow (the reason a million keys cost
// no GC time); a field that is a string, slice, map, pointer or interface
// breaks it.
func TestIndexRecordsHoldNoPointers(t *testing.T) {
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
			t.Errorf("%s is a %s: the index's per-key storage must hold no pointers", path, ty.Kind())
		}
	}
	walk("record", reflect.TypeFor[record]())
	walk("Digest", reflect.TypeFor[Digest]())
}

// TestIndexRoundTrip: every field of every key, current values and old
// ones, added by entry or by value, replaced by value, comes back from
// Lookup and Each exactly, across many distinct tenants, tiers, ids and
// users (the arena and the name table).
func TestIndexRoundTrip(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const n = 5000
	b := NewIndexBuilder(0) // grows from nothing
	want := map[Digest]APIKey{}
	for i := range n {
		e := &Entry{ID: fmt.Sprintf("key-%d", i), Digest: DigestOf(fmt.Sprint("v", i)), Tier: fmt.Sprint("tier", i%7),
			User: map[bool]string{true: fmt.Sprintf("user-%d\u00e9", i), false: ""}[i%3 == 0], Superuser: i%11 == 0,
			Disabled: i%13 == 0, Created: now, Expires: now.Add(time.Duration(i) * time.Hour)}
		if i%5 == 0 {
			e.Previous = []Previous{{Digest: DigestOf(fmt.Sprint("old", i)), Expires: now.Add(time.Minute)}}
		}
		tenant := fmt.Sprint("tenant-", i%400)
		if i%17 == 0 {
			tenant = ""
		}
		if taken, _ := b.Add(e, tenant, 0); taken != "" {
			t.Fatalf("key %d refused: %s", i, taken)
		}
		k := APIKey{ID: e.ID, Tenant: tenant, User: e.User, Tier: e.Tier, Superuser: e.Superuser, Disabled: e.Disabled, expires: unix(e.Expires)}
		want[e.Digest] = k
		if e.Previous != nil {
			old := k
			old.Rotated, old.expires = true, min(k.expires, unix(now.Add(time.Minute))) // never past the key
			want[e.Previous[0].Digest] = old
		}
	}
	for i := range 100 { // store values: new ones, and replacements
		d := DigestOf(fmt.Sprint("store", i))
		if i%2 == 0 {
			d = DigestOf(fmt.Sprint("v", i))
		}
		k := NewAPIKey(fmt.Sprint("pk-", i), "tenant-store", "", "admin", false, i%4 == 0, now.Add(time.Hour), RateLimit{PerUnit: uint32(i), Unit: Unit(i % 7)})
		b.AddValue(d, k)
		want[d] = k
	}
	x := b.Build()
	for d, w := range want {
		if got, ok := x.Lookup(d); !ok || got != w {
			t.Fatalf("digest %s: got %+v %v, want %+v", d, got, ok, w)
		}
	}
	if _, ok := x.Lookup(DigestOf("absent")); ok {
		t.Fatal("an absent digest was found")
	}
	each := 0
	x.Each(func(k APIKey) {
		if k.Rotated {
			t.Fatalf("Each gave an old value: %+v", k)
		}
		each++
	})
	if each != x.Len() {
		t.Fatalf("Each gave %d keys, Len %d", each, x.Len())
	}
	if !x.HasTenant("tenant-399") || !x.HasTenant("tenant-store") || x.HasTenant("") {
		t.Fatal("tenants")
	}
}
