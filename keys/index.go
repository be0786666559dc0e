package keys

// This file holds the immutable index a check looks API keys up in.

import (
	"fmt"
	"time"
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
	Rotated   bool  // this value is an old one of a rotated key
	expires   int64 // Unix seconds, effective; 0: never
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
type Index struct {
	byDigest map[Digest]int32
	keys     []APIKey
	entries  int // keys, not counting old values of rotated keys
	tenants  map[string]bool
}

// Lookup returns the key whose digest is d.
func (x *Index) Lookup(d Digest) (APIKey, bool) {
	if x == nil {
		return APIKey{}, false
	}
	i, ok := x.byDigest[d]
	if !ok {
		return APIKey{}, false
	}
	return x.keys[i], true
}

// Len returns the number of keys (old values of rotated keys not counted).
func (x *Index) Len() int {
	if x == nil {
		return 0
	}
	return x.entries
}

// HasTenant reports whether some key is bound to tenant.
func (x *Index) HasTenant(tenant string) bool { return x != nil && x.tenants[tenant] }

// Each calls fn with every key (old values of rotated keys not included).
func (x *Index) Each(fn func(APIKey)) {
	if x == nil {
		return
	}
	for _, k := range x.keys {
		if !k.Rotated {
			fn(k)
		}
	}
}

// IndexBuilder makes an Index. It is not safe for concurrent use, and is
// spent once Build is called.
type IndexBuilder struct {
	x      *Index
	intern map[string]string
}

// NewIndexBuilder returns a builder sized for about n keys.
func NewIndexBuilder(n int) *IndexBuilder {
	return &IndexBuilder{
		x:      &Index{byDigest: make(map[Digest]int32, n), keys: make([]APIKey, 0, n), tenants: map[string]bool{}},
		intern: map[string]string{},
	}
}

// str shares one copy of the strings many keys repeat (tenants, tiers).
func (b *IndexBuilder) str(s string) string {
	if v, ok := b.intern[s]; ok {
		return v
	}
	if len(b.intern) < 1<<16 {
		b.intern[s] = s
	}
	return s
}

// Add indexes e, and each of its previous values, with its effective
// expiry under lifetime, and tenant as the tenant it is bound to (the
// caller's canonical name for e.Tenant). When a digest of e is already
// indexed, nothing of e is added: Add returns the id of the key holding it
// and the field of e that repeats it (".sha256", ".previous[1].sha256").
func (b *IndexBuilder) Add(e *Entry, tenant string, lifetime time.Duration) (taken, field string) {
	x := b.x
	if i, dup := x.byDigest[e.Digest]; dup {
		return x.keys[i].ID, ".sha256"
	}
	for j, p := range e.Previous {
		i, dup := x.byDigest[p.Digest]
		switch {
		case dup:
			return x.keys[i].ID, fmt.Sprintf(".previous[%d].sha256", j)
		case p.Digest == e.Digest:
			return e.ID, fmt.Sprintf(".previous[%d].sha256", j)
		}
	}
	k := APIKey{ID: e.ID, Tenant: b.str(tenant), User: e.User, Tier: b.str(e.Tier), Superuser: e.Superuser,
		Disabled: e.Disabled, expires: unix(e.ExpiresAt(lifetime))}
	b.put(e.Digest, k)
	x.entries++
	for _, p := range e.Previous {
		old := k
		old.Rotated = true
		if until := unix(p.Expires); k.expires == 0 || until < k.expires {
			old.expires = until
		}
		b.put(p.Digest, old)
	}
	if tenant != "" {
		x.tenants[k.Tenant] = true
	}
	return "", ""
}

func (b *IndexBuilder) put(d Digest, k APIKey) {
	b.x.byDigest[d] = int32(len(b.x.keys))
	b.x.keys = append(b.x.keys, k)
}

// account counts k as a key (when it is not an old value) and its tenant.
func (b *IndexBuilder) account(k APIKey) {
	if !k.Rotated {
		b.x.entries++
	}
	if k.Tenant != "" {
		b.x.tenants[k.Tenant] = true
	}
}

// AddValue indexes one value of a key as it is: a store's key (its current
// value, or an old one with Rotated set). A digest already indexed is
// replaced.
func (b *IndexBuilder) AddValue(d Digest, k APIKey) {
	k.Tenant, k.Tier = b.str(k.Tenant), b.str(k.Tier)
	if i, dup := b.x.byDigest[d]; dup {
		b.x.keys[i] = k
		return
	}
	b.put(d, k)
	b.account(k)
}

// NewAPIKey returns the APIKey a check sees for a key of a store (no
// superuser keys there), expiring at expires (zero: never).
func NewAPIKey(id, tenant, user, tier string, disabled, rotated bool, expires time.Time) APIKey {
	return APIKey{ID: id, Tenant: tenant, User: user, Tier: tier, Disabled: disabled, Rotated: rotated, expires: unix(expires)}
}

// Build returns the Index.
func (b *IndexBuilder) Build() *Index {
	x := b.x
	b.x, b.intern = nil, nil
	return x
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
