package cache_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/cache"
)

// TestClockBounded: however many keys are added, the map holds its size,
// and what it holds it returns.
func TestClockBounded(t *testing.T) {
	for _, size := range []int{1, 3, 100, 1000, 100_000} {
		c := cache.NewClock[int, int](size)
		for i := range 5 * size {
			c.Add(i, -i)
		}
		if n := c.Len(); n != size {
			t.Errorf("size %d: %d entries after %d adds", size, n, 5*size)
		}
		found := 0
		for i := range 5 * size {
			if v, ok := c.Get(i); ok {
				found++
				if v != -i {
					t.Fatalf("size %d: key %d holds %d", size, i, v)
				}
			}
		}
		if found != c.Len() {
			t.Errorf("size %d: %d keys found, Len %d", size, found, c.Len())
		}
	}
}

// TestClockKeepsWhatIsUsed: entries looked up between adds survive a flood
// of entries added once (the cache's point: a burst of first-sight tokens
// must not evict the tokens in use), and the flood's old entries go.
func TestClockKeepsWhatIsUsed(t *testing.T) {
	c := cache.NewClock[int, int](512)
	hot := 64
	for i := range hot {
		c.Add(-1-i, i)
	}
	for i := range 10_000 {
		c.Add(i, i)
		if _, ok := c.Get(-1 - i%hot); !ok {
			t.Fatalf("hot entry %d evicted after %d one-off adds", i%hot, i)
		}
	}
	if _, ok := c.Get(0); ok {
		t.Error("the flood's first entry survived 10,000 later adds in a map of 512")
	}
	if _, ok := c.Get(9_999); !ok {
		t.Error("the newest entry is missing")
	}
}

// TestClockRemove: a removed key is gone, its slot is reused, and an Add of
// a present key replaces its value without growing the map.
func TestClockRemove(t *testing.T) {
	c := cache.NewClock[string, int](4)
	c.Add("a", 1)
	c.Add("b", 2)
	c.Add("a", 3)
	if v, _ := c.Get("a"); v != 3 || c.Len() != 2 {
		t.Fatalf("replace: a=%d len=%d", v, c.Len())
	}
	c.Remove("a")
	c.Remove("missing")
	if _, ok := c.Get("a"); ok || c.Len() != 1 {
		t.Fatalf("after Remove: found=%v len=%d", ok, c.Len())
	}
	for _, k := range []string{"c", "d", "e"} {
		c.Add(k, 0)
	}
	if c.Len() != 4 {
		t.Fatalf("len %d after filling the removed slot, want 4", c.Len())
	}
	if _, ok := c.Get("b"); !ok {
		t.Error("b evicted while a removed slot was free")
	}
}

// TestClockConcurrent runs lookups, adds and removes at once (for -race)
// and checks the bound and every value found.
func TestClockConcurrent(t *testing.T) {
	c := cache.NewClock[int, int](1000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20_000 {
				k := (i*7 + w) % 3000
				switch i % 5 {
				case 0:
					c.Add(k, k*2)
				case 1:
					c.Remove(k)
				default:
					if v, ok := c.Get(k); ok && v != k*2 {
						t.Errorf("key %d holds %d", k, v)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > 1000 {
		t.Errorf("%d entries in a map of 1000", n)
	}
}

// BenchmarkClockGet measures lookups from every P at once (run with
// -cpu 1,2,4): one key all callers share (a single hot token) and many.
func BenchmarkClockGet(b *testing.B) {
	type digest [32]byte
	for _, keys := range []int{1, 4096} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			c := cache.NewClock[digest, int](100_000)
			ds := make([]digest, keys)
			for i := range ds {
				binary.LittleEndian.PutUint64(ds[i][:], uint64(i)*0x9e3779b97f4a7c15)
				c.Add(ds[i], i)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := c.Get(ds[i%keys]); !ok {
						b.Fatal("missing")
					}
					i++
				}
			})
		})
	}
}
