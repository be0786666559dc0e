package credits

// This file holds the set of a ledger's holds: read by every check
// without a lock or an allocation, changed rarely (a wallet charged for
// the first time here, a hold forgotten).

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// holdSet is an immutable map that checks read, and the holds added since
// it was made, which settlements merge in.
type holdSet struct {
	base atomic.Pointer[map[string]*hold]

	mu     sync.Mutex       // guards what follows
	added  map[string]*hold // not yet in base
	gone   []string         // forgotten, still in base
	merged time.Time        // the last merge
}

func newHoldSet() *holdSet {
	s := &holdSet{added: map[string]*hold{}}
	s.base.Store(&map[string]*hold{})
	return s
}

// get returns tenant's hold, making it when there is none (or only a
// forgotten one, still in base until the next merge).
func (s *holdSet) get(tenant string) *hold {
	if h := (*s.base.Load())[tenant]; h != nil && !h.gone.Load() {
		return h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.added[tenant]; h != nil {
		return h
	}
	if h := (*s.base.Load())[tenant]; h != nil && !h.gone.Load() { // merged meanwhile
		return h
	}
	h := &hold{}
	s.added[tenant] = h
	return h
}

// lookup returns tenant's hold, if there is one.
func (s *holdSet) lookup(tenant string) (*hold, bool) {
	if h := (*s.base.Load())[tenant]; h != nil && !h.gone.Load() {
		return h, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.added[tenant]
	return h, ok
}

// each calls f with every hold (none forgotten).
func (s *holdSet) each(f func(tenant string, h *hold)) {
	s.mu.Lock()
	added := maps.Clone(s.added)
	s.mu.Unlock()
	for t, h := range *s.base.Load() {
		if !h.gone.Load() {
			f(t, h)
		}
	}
	for t, h := range added {
		f(t, h)
	}
}

// forget removes h, tenant's hold, at the next merge (a check that finds
// it meanwhile sees it gone and asks again).
func (s *holdSet) forget(tenant string, h *hold) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.added[tenant] == h {
		delete(s.added, tenant)
		return
	}
	s.gone = append(s.gone, tenant)
}

// merge makes a new base of the old one, the holds added and without the
// holds forgotten: at once when the changes are an eighth of the base,
// else at most every second, so that many new wallets cost copies in
// proportion.
func (s *holdSet) merge(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.added) + len(s.gone)
	base := *s.base.Load()
	if n == 0 || (n*8 < len(base) && now.Sub(s.merged) < time.Second) {
		return
	}
	next := make(map[string]*hold, len(base)+len(s.added))
	for t, h := range base {
		next[t] = h
	}
	for _, t := range s.gone {
		if h := next[t]; h != nil && h.gone.Load() {
			delete(next, t)
		}
	}
	for t, h := range s.added {
		next[t] = h
	}
	s.base.Store(&next)
	s.added, s.gone, s.merged = map[string]*hold{}, nil, now
}
