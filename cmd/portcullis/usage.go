package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// keyUsage is one key's usage as /keys/usage reports it.
type keyUsage struct {
	ID       string     `json:"id"`
	Allowed  uint64     `json:"allowed"`
	Denied   uint64     `json:"denied"`
	LastUsed *time.Time `json:"last_used,omitempty"`
}

type usageReport struct {
	Since time.Time  `json:"since"`
	Keys  []keyUsage `json:"keys"`
}

// usage counts checks per API key id in memory (allowed, denied, last
// used), for GET /keys/usage. It is kept out of Prometheus on purpose: one
// series per key would be unbounded cardinality. Only ids of the policy's
// keys are counted, so it is bounded by the number of keys. Safe for
// concurrent use; recording takes no lock once a key has been seen.
type usage struct {
	since time.Time
	known atomic.Pointer[map[string]bool]
	m     sync.Map // id → *usageCounters
}

type usageCounters struct {
	allowed, denied atomic.Uint64
	last            atomic.Int64 // unix nanoseconds
}

func newUsage() *usage { return &usage{since: time.Now().UTC()} }

// track sets the key ids to count, dropping the counters of keys gone from
// the policy.
func (u *usage) track(snap *policy.Snapshot) {
	ids := make(map[string]bool, len(snap.Keys()))
	for _, k := range snap.Keys() {
		ids[k.ID] = true
	}
	u.known.Store(&ids)
	u.m.Range(func(id, _ any) bool {
		if !ids[id.(string)] {
			u.m.Delete(id)
		}
		return true
	})
}

func (u *usage) record(id string, allowed bool, now time.Time) {
	if id == "" {
		return
	}
	if k := u.known.Load(); k == nil || !(*k)[id] {
		return
	}
	v, ok := u.m.Load(id)
	if !ok {
		v, _ = u.m.LoadOrStore(id, &usageCounters{})
	}
	c := v.(*usageCounters)
	if allowed {
		c.allowed.Add(1)
	} else {
		c.denied.Add(1)
	}
	c.last.Store(now.UnixNano())
}

func (u *usage) report() usageReport {
	r := usageReport{Since: u.since, Keys: []keyUsage{}}
	u.m.Range(func(id, v any) bool {
		c := v.(*usageCounters)
		k := keyUsage{ID: id.(string), Allowed: c.allowed.Load(), Denied: c.denied.Load()}
		if n := c.last.Load(); n != 0 {
			t := time.Unix(0, n).UTC()
			k.LastUsed = &t
		}
		r.Keys = append(r.Keys, k)
		return true
	})
	sort.Slice(r.Keys, func(i, j int) bool { return r.Keys[i].ID < r.Keys[j].ID })
	return r
}

func (u *usage) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(u.report())
}
