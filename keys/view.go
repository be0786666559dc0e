package keys

// This file holds the View: an Index with layers of changes on top, what a
// mirror of a key store publishes after each batch of changes, so that a
// change costs its own size, not the index's.

// Set is a set of API keys a check looks keys up in. Implementations are
// immutable and safe for concurrent use.
type Set interface {
	Lookup(d Digest) (APIKey, bool)
	HasTenant(tenant string) bool
}

var _, _ Set = (*Index)(nil), (*View)(nil)

// Layer is one batch of changes on top of an Index: the keys changed (by
// id; a key absent from values was removed) and every value of those keys.
// A Layer is immutable once made.
type Layer struct {
	changed map[string]bool
	values  map[Digest]APIKey
	tenants map[string]bool
}

// NewLayer returns an empty Layer.
func NewLayer() *Layer {
	return &Layer{changed: map[string]bool{}, values: map[Digest]APIKey{}, tenants: map[string]bool{}}
}

// Len returns how many keys the layer changes.
func (l *Layer) Len() int { return len(l.changed) }

// With returns a copy of l in which key id has the given values (digest to
// key; none: the key was removed). l is unchanged.
func (l *Layer) With(changes map[string]map[Digest]APIKey) *Layer {
	n := &Layer{changed: make(map[string]bool, len(l.changed)+len(changes)),
		values: make(map[Digest]APIKey, len(l.values)+len(changes)), tenants: make(map[string]bool, len(l.tenants))}
	for id := range l.changed {
		n.changed[id] = true
	}
	for d, k := range l.values {
		if _, again := changes[k.ID]; !again {
			n.values[d] = k
		}
	}
	for t := range l.tenants {
		n.tenants[t] = true
	}
	for id, vals := range changes {
		n.changed[id] = true
		for d, k := range vals {
			n.values[d] = k
			if k.Tenant != "" {
				n.tenants[k.Tenant] = true
			}
		}
	}
	return n
}

// View is an Index with up to a few Layers of changes on top, newest last.
// It is immutable and safe for concurrent use.
type View struct {
	base   *Index
	layers []*Layer
}

// NewView returns the view of base with layers on top (oldest first).
func NewView(base *Index, layers ...*Layer) *View { return &View{base: base, layers: layers} }

// Base returns the view's index and Layers its layers, oldest first.
func (v *View) Base() *Index     { return v.base }
func (v *View) Layers() []*Layer { return v.layers }

// Lookup returns the key whose digest is d in the newest layer that changed
// it: a value of a key a newer layer changed (refreshed away, removed) is
// not found.
func (v *View) Lookup(d Digest) (APIKey, bool) {
	if v == nil {
		return APIKey{}, false
	}
	for i := len(v.layers) - 1; i >= 0; i-- {
		if k, ok := v.layers[i].values[d]; ok {
			return k, !v.shadowed(k.ID, i+1)
		}
	}
	k, ok := v.base.Lookup(d)
	return k, ok && !v.shadowed(k.ID, 0)
}

// shadowed reports whether a layer from index from on changed key id.
func (v *View) shadowed(id string, from int) bool {
	for _, l := range v.layers[from:] {
		if l.changed[id] {
			return true
		}
	}
	return false
}

// HasTenant reports whether some key is bound to tenant. A tenant whose
// keys a layer removed may still count until the layers are merged.
func (v *View) HasTenant(tenant string) bool {
	if v == nil {
		return false
	}
	for _, l := range v.layers {
		if l.tenants[tenant] {
			return true
		}
	}
	return v.base.HasTenant(tenant)
}

// Merge returns an Index holding what the view holds: base and layers
// folded into one, for a mirror to replace them with.
func (v *View) Merge() *Index {
	changed := map[string]bool{}
	for _, l := range v.layers {
		for id := range l.changed {
			changed[id] = true
		}
	}
	b := NewIndexBuilder(v.base.Len() + len(changed))
	v.base.each(func(d Digest, k APIKey) {
		if !changed[k.ID] {
			b.put(d, b.record(k))
			b.account(k)
		}
	})
	// The newest value of each changed key wins.
	latest := map[string]*Layer{}
	for _, l := range v.layers {
		for id := range l.changed {
			latest[id] = l
		}
	}
	for _, l := range v.layers {
		for d, k := range l.values {
			if latest[k.ID] == l {
				b.put(d, b.record(k))
				b.account(k)
			}
		}
	}
	return b.Build()
}
