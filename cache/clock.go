package cache

// This file holds the bounded map the hot caches are made of: lookups that
// never wait on each other.

import (
	"sync"
	"sync/atomic"
)

// Clock is a bounded map from K to V that evicts by the CLOCK (second
// chance) rule, which approximates least-recently-used: an entry looked up
// since the clock hand last passed it survives the hand once more. A lookup
// takes no lock: it reads a sync.Map (whose loads are atomic reads, so
// lookups from every core proceed at once, even of one hot key) and marks
// the entry used with one atomic store, made only when the mark is not set
// already, so a hot entry's cache line stays shared between cores. Add and
// Remove take the map's one mutex, which only they and the hand use. A new
// entry is not marked used: a flood of entries seen once evicts itself
// before it evicts entries in use. It is safe for concurrent use.
type Clock[K comparable, V any] struct {
	m sync.Map // K → *clockEntry[K, V]

	mu   sync.Mutex          // guards what follows, and every change to m
	ring []*clockEntry[K, V] // the hand goes round it; nil: a free slot
	free []int32             // free slots of ring
	hand int
	size int
}

// clockEntry is immutable but for used: Add of a present key stores a new
// entry in the same slot.
type clockEntry[K comparable, V any] struct {
	key  K
	val  V
	used atomic.Bool
	slot int32 // in ring
}

// NewClock returns a Clock of at most size entries (at least 1).
func NewClock[K comparable, V any](size int) *Clock[K, V] {
	return &Clock[K, V]{size: max(size, 1)}
}

// Get returns the value for k and marks it used.
func (c *Clock[K, V]) Get(k K) (V, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	e := v.(*clockEntry[K, V])
	if !e.used.Load() {
		e.used.Store(true)
	}
	return e.val, true
}

// Add sets the value for k, evicting an entry when the map is full.
func (c *Clock[K, V]) Add(k K, v V) {
	e := &clockEntry[K, V]{key: k, val: v}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m.Load(k); ok {
		o := old.(*clockEntry[K, V])
		e.slot = o.slot
		e.used.Store(o.used.Load())
	} else {
		switch {
		case len(c.free) > 0:
			e.slot = c.free[len(c.free)-1]
			c.free = c.free[:len(c.free)-1]
		case len(c.ring) < c.size:
			c.ring = append(c.ring, nil)
			e.slot = int32(len(c.ring) - 1)
		default:
			e.slot = c.evict()
		}
	}
	c.ring[e.slot] = e
	c.m.Store(k, e)
}

// evict frees the slot the hand stops at: the first entry not used since
// the hand last passed, clearing the marks it passes. The ring is full.
func (c *Clock[K, V]) evict() int32 {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.ring)
		e := c.ring[i]
		if e.used.Load() {
			e.used.Store(false)
			continue
		}
		c.m.Delete(e.key)
		return int32(i)
	}
}

// Remove deletes k, if present.
func (c *Clock[K, V]) Remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m.LoadAndDelete(k)
	if !ok {
		return
	}
	e := v.(*clockEntry[K, V])
	c.ring[e.slot] = nil
	c.free = append(c.free, e.slot)
}

// Len returns the number of entries.
func (c *Clock[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ring) - len(c.free)
}
