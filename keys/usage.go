package keys

// This file holds per-key usage accounting.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeyUsage is one key's usage as a Report gives it.
type KeyUsage struct {
	ID       string     `json:"id"`
	Allowed  uint64     `json:"allowed"`
	Denied   uint64     `json:"denied"`
	LastUsed *time.Time `json:"last_used,omitempty"`
}

// Report is the usage of every key counted since Since, as the server's
// GET /keys/usage serves it and portcullis keys list --admin reads it.
type Report struct {
	Since time.Time  `json:"since"`
	Keys  []KeyUsage `json:"keys"`
}

// Usage counts checks per key id in memory: allowed, denied, last used.
// It is kept out of Prometheus on purpose (one series per key would be
// unbounded); it is told the ids of checks' keys, which come from an index,
// and Track drops the counters of keys a new index no longer has, so it is
// bounded by the keys of the index and the one before. It is safe for
// concurrent use, and recording takes no lock once a key has been seen.
type Usage struct {
	since time.Time
	m     sync.Map // id → *counters
}

type counters struct {
	allowed, denied atomic.Uint64
	last            atomic.Int64 // Unix nanoseconds
}

// NewUsage returns a Usage counting from now.
func NewUsage() *Usage { return &Usage{since: time.Now().UTC()} }

// Track drops the counters of the keys x does not have. It holds nothing of
// x: a set of a million ids would cost the collector what the index saves.
func (u *Usage) Track(x *Index) {
	keep := map[string]bool{} // of the counted ids: a few
	x.Each(func(k APIKey) {
		if _, ok := u.m.Load(k.ID); ok {
			keep[k.ID] = true
		}
	})
	u.m.Range(func(id, _ any) bool {
		if !keep[id.(string)] {
			u.m.Delete(id)
		}
		return true
	})
}

// Record counts one check of key id ("" is no key).
func (u *Usage) Record(id string, allowed bool, now time.Time) {
	if id == "" {
		return
	}
	v, ok := u.m.Load(id)
	if !ok {
		// A copy: the id may be a string over an index's arena, which the
		// counter would keep after the index is replaced.
		v, _ = u.m.LoadOrStore(strings.Clone(id), &counters{})
	}
	c := v.(*counters)
	if allowed {
		c.allowed.Add(1)
	} else {
		c.denied.Add(1)
	}
	c.last.Store(now.UnixNano())
}

// Report returns the counts so far, by key id.
func (u *Usage) Report() Report {
	r := Report{Since: u.since, Keys: []KeyUsage{}}
	u.m.Range(func(id, v any) bool {
		c := v.(*counters)
		k := KeyUsage{ID: id.(string), Allowed: c.allowed.Load(), Denied: c.denied.Load()}
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

// FetchReport reads the usage Report a running server serves on its admin
// listener (GET /keys/usage), by key id.
func FetchReport(ctx context.Context, admin string) (map[string]KeyUsage, error) {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(admin, "/")+"/keys/usage", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var body Report
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := make(map[string]KeyUsage, len(body.Keys))
	for _, k := range body.Keys {
		out[k.ID] = k
	}
	return out, nil
}
