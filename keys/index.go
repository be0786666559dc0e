package keys

// This file holds the immutable index a check looks API keys up in.

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// APIKey is one key as a check sees it: a value, copied out of the index,
// so nothing a caller does with it changes the index.
type APIKey struct {
	ID        string
	Tenant    string
	User      string
	Tier      string
	Superuser bool
	Disabled  bool
	Rotated   bool      // this value is an old one of a rotated key
	Limit     RateLimit // the key's own rate limit (zero: its tenant's plan)
	expires   int64     // Unix seconds, effective; 0: never
}

// Expires returns when the key stops working (zero: never).
func (k APIKey) Expires() time.Time {
	if k.expires == 0 {
		return time.Time{}
	}
	return time.Unix(k.expires, 0).UTC()
}

// ExpiredAt reports whether the key has expired at now.
func (k APIKey) ExpiredAt(now time.Time) bool { return k.expires != 0 && now.Unix() >= k.expires }

// Index maps key digests to keys. It is immutable once built and safe for
// concurrent use; a change makes a new Index.
//
// It holds no pointers per key, so that the garbage collector, which marks
// every pointer of the heap on each cycle, never walks a million keys: the
// digests are one array, found through an open-addressing table of int32
// (a digest's first bytes are as random as SHA-256, so they are the hash);
// each key is a record of offsets and numbers; its id and user are bytes of
// one text arena; its tenant and tier are numbers in tables of the few
// distinct names. A million keys take about 80 MB.
type Index struct {
	slots   []int32  // len a power of two, at most half full; 0: empty, else 1 + the value's number
	digests []Digest // by value number
	recs    []record // by value number
	text    []byte   // ids and users; never modified once written (APIKey's strings point into it)
	tenants []string // by number; tenants[0] is ""
	tiers   []string // by number; tiers[0] is ""
	entries int      // keys, not counting old values of rotated keys
	bound   map[string]bool
}

// record is one value of a key as the index stores it.
type record struct {
	expires  int64 // Unix seconds, effective; 0: never
	id, user span
	tenant   uint32 // in tenants
	limit    uint32 // the key's own requests per unit; 0: none
	tier     uint16 // in tiers
	flags    uint8
	unit     Unit
}

// span is a string in the text arena.
type span struct{ off, len uint32 }

const (
	flagSuperuser = 1 << iota
	flagDisabled
	flagRotated
)

// key returns the APIKey of value i. Its id and user are strings over the
// arena, which is never modified: no copy, no allocation.
func (x *Index) key(i int32) APIKey {
	r := &x.recs[i]
	return APIKey{ID: x.str(r.id), User: x.str(r.user), Tenant: x.tenants[r.tenant], Tier: x.tiers[r.tier],
		Superuser: r.flags&flagSuperuser != 0, Disabled: r.flags&flagDisabled != 0, Rotated: r.flags&flagRotated != 0,
		Limit: RateLimit{PerUnit: r.limit, Unit: r.unit}, expires: r.expires}
}

func (x *Index) str(s span) string {
	if s.len == 0 {
		return ""
	}
	return unsafe.String(&x.text[s.off], int(s.len))
}

// find returns the number of the value whose digest is d, or the slot where
// it would go (a negative number: -1 - slot).
func (x *Index) find(d Digest) int32 {
	mask := uint64(len(x.slots) - 1)
	for h := binary.LittleEndian.Uint64(d[:8]) & mask; ; h = (h + 1) & mask {
		v := x.slots[h]
		if v == 0 {
			return -1 - int32(h)
		}
		if x.digests[v-1] == d {
			return v - 1
		}
	}
}

// Lookup returns the key whose digest is d.
func (x *Index) Lookup(d Digest) (APIKey, bool) {
	if x == nil {
		return APIKey{}, false
	}
	if len(x.slots) == 0 {
		return APIKey{}, false
	}
	i := x.find(d)
	if i < 0 {
		return APIKey{}, false
	}
	return x.key(i), true
}

// Len returns the number of keys (old values of rotated keys not counted).
func (x *Index) Len() int {
	if x == nil {
		return 0
	}
	return x.entries
}

// HasTenant reports whether some key is bound to tenant.
func (x *Index) HasTenant(tenant string) bool { return x != nil && x.bound[tenant] }

// Each calls fn with every key (old values of rotated keys not included).
func (x *Index) Each(fn func(APIKey)) {
	if x == nil {
		return
	}
	for i := range x.recs {
		if x.recs[i].flags&flagRotated == 0 {
			fn(x.key(int32(i)))
		}
	}
}

// each calls fn with every value's digest and key, rotated ones included.
func (x *Index) each(fn func(Digest, APIKey)) {
	for i, d := range x.digests {
		fn(d, x.key(int32(i)))
	}
}

// IndexBuilder makes an Index. It is not safe for concurrent use, and is
// spent once Build is called.
type IndexBuilder struct {
	x       *Index
	tenants map[string]uint32
	tiers   map[string]uint16
}

// NewIndexBuilder returns a builder sized for about n keys.
func NewIndexBuilder(n int) *IndexBuilder {
	x := &Index{digests: make([]Digest, 0, n), recs: make([]record, 0, n), text: make([]byte, 0, 8*n),
		tenants: []string{""}, tiers: []string{""}, bound: map[string]bool{}}
	x.slots = make([]int32, slotsFor(n))
	return &IndexBuilder{x: x, tenants: map[string]uint32{"": 0}, tiers: map[string]uint16{"": 0}}
}

// slotsFor returns the table size for n values: a power of two, at least
// twice n.
func slotsFor(n int) int {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return size
}

// tenant and tier return the number of a name, adding it when new.
func (b *IndexBuilder) tenant(s string) uint32 {
	if i, ok := b.tenants[s]; ok {
		return i
	}
	i := uint32(len(b.x.tenants))
	b.x.tenants = append(b.x.tenants, s)
	b.tenants[s] = i
	return i
}

func (b *IndexBuilder) tier(s string) uint16 {
	if i, ok := b.tiers[s]; ok {
		return i
	}
	if len(b.x.tiers) > math.MaxUint16 {
		panic("keys: more than 65,535 tier names") // a policy has a handful
	}
	i := uint16(len(b.x.tiers))
	b.x.tiers = append(b.x.tiers, s)
	b.tiers[s] = i
	return i
}

// text appends s to the arena.
func (b *IndexBuilder) text(s string) span {
	if s == "" {
		return span{}
	}
	if len(b.x.text)+len(s) > math.MaxUint32 {
		panic("keys: more than 4 GiB of key ids and users") // a programming limit, far past any keys file
	}
	sp := span{off: uint32(len(b.x.text)), len: uint32(len(s))}
	b.x.text = append(b.x.text, s...)
	return sp
}

// record stores k's fields as a record.
func (b *IndexBuilder) record(k APIKey) record {
	r := record{id: b.text(k.ID), user: b.text(k.User), tenant: b.tenant(k.Tenant), tier: b.tier(k.Tier), expires: k.expires,
		limit: k.Limit.PerUnit, unit: k.Limit.Unit}
	for _, f := range [...]struct {
		on   bool
		flag uint8
	}{{k.Superuser, flagSuperuser}, {k.Disabled, flagDisabled}, {k.Rotated, flagRotated}} {
		if f.on {
			r.flags |= f.flag
		}
	}
	return r
}

// Add indexes e, and each of its previous values, with its effective
// expiry under lifetime, and tenant as the tenant it is bound to (the
// caller's canonical name for e.Tenant). When a digest of e is already
// indexed, nothing of e is added: Add returns the id of the key holding it
// and the field of e that repeats it (".sha256", ".previous[1].sha256").
func (b *IndexBuilder) Add(e *Entry, tenant string, lifetime time.Duration) (taken, field string) {
	x := b.x
	if i := x.find(e.Digest); i >= 0 {
		return x.key(i).ID, ".sha256"
	}
	for j, p := range e.Previous {
		i := x.find(p.Digest)
		switch {
		case i >= 0:
			return x.key(i).ID, fmt.Sprintf(".previous[%d].sha256", j)
		case p.Digest == e.Digest:
			return e.ID, fmt.Sprintf(".previous[%d].sha256", j)
		}
	}
	k := APIKey{ID: e.ID, Tenant: tenant, User: e.User, Tier: e.Tier, Superuser: e.Superuser,
		Disabled: e.Disabled, Limit: e.Limit, expires: unix(e.ExpiresAt(lifetime))}
	r := b.record(k)
	b.put(e.Digest, r)
	x.entries++
	for _, p := range e.Previous {
		old := r // the same id and user bytes
		old.flags |= flagRotated
		if until := unix(p.Expires); k.expires == 0 || until < k.expires {
			old.expires = until
		}
		b.put(p.Digest, old)
	}
	if tenant != "" {
		x.bound[tenant] = true
	}
	return "", ""
}

// put adds a value whose digest is not indexed yet.
func (b *IndexBuilder) put(d Digest, r record) {
	x := b.x
	if len(x.digests) >= math.MaxInt32-1 {
		panic("keys: more than 2^31 key values") // a programming limit: 64 GB of digests
	}
	if 2*(len(x.digests)+1) > len(x.slots) {
		b.grow()
	}
	slot := -1 - x.find(d)
	x.slots[slot] = int32(len(x.digests)) + 1
	x.digests = append(x.digests, d)
	x.recs = append(x.recs, r)
}

// grow doubles the table and places every value anew.
func (b *IndexBuilder) grow() {
	x := b.x
	x.slots = make([]int32, 2*len(x.slots))
	for i, d := range x.digests {
		x.slots[-1-x.find(d)] = int32(i) + 1
	}
}

// account counts k as a key (when it is not an old value) and its tenant.
func (b *IndexBuilder) account(k APIKey) {
	if !k.Rotated {
		b.x.entries++
	}
	if k.Tenant != "" {
		b.x.bound[k.Tenant] = true
	}
}

// AddValue indexes one value of a key as it is: a store's key (its current
// value, or an old one with Rotated set). A digest already indexed is
// replaced.
func (b *IndexBuilder) AddValue(d Digest, k APIKey) {
	if i := b.x.find(d); i >= 0 {
		if b.x.recs[i].flags&flagRotated == 0 {
			b.x.entries--
		}
		b.x.recs[i] = b.record(k)
	} else {
		b.put(d, b.record(k))
	}
	b.account(k)
}

// NewAPIKey returns the APIKey a check sees for a key of a store (no
// superuser keys there), expiring at expires (zero: never), with its own
// rate limit (zero: none).
func NewAPIKey(id, tenant, user, tier string, disabled, rotated bool, expires time.Time, limit RateLimit) APIKey {
	return APIKey{ID: id, Tenant: tenant, User: user, Tier: tier, Disabled: disabled, Rotated: rotated, Limit: limit, expires: unix(expires)}
}

// Build returns the Index.
func (b *IndexBuilder) Build() *Index {
	x := b.x
	b.x, b.tenants, b.tiers = nil, nil, nil
	// Give back what the size guess reserved beyond what was used.
	x.digests, x.recs, x.text = fit(x.digests), fit(x.recs), fit(x.text)
	return x
}

// fit returns s in an array of its length when more than a quarter of its
// capacity is unused (a size guess far off; a near one costs less unused
// than a copy costs at its peak) (the strings over the text arena keep the old one as
// long as they are held; neither is modified).
func fit[T any](s []T) []T {
	if cap(s)-len(s) <= cap(s)/4 {
		return s
	}
	return append(make([]T, 0, len(s)), s...)
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
