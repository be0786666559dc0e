// Package gcfloor keeps the garbage collector from running more often than
// a heap of a given size would make it run. Go collects when the heap has
// grown by GOGC percent of what the last collection kept (100%: it doubles),
// and at 4 MB at the least; a server whose live heap is a few megabytes then
// collects dozens of times a second under load, and the marking and stack
// scanning of those cycles cost more than its checks. After every
// collection Keep sets GOGC so that the heap may grow by four times what
// the collection found live before the next one, by at least 16 MiB and at
// most a given most, and never by less than Go's default (GOGC 100). The
// growth follows the live heap: a small policy's few megabytes get 16-20
// MiB, so a sidecar's memory stays small; a heap of cached tokens, whose
// marking costs more per cycle, gets more, up to the most; a heap that is
// large already (a million keys, a full token cache) is collected as Go
// would, so memory stays what it was. A memory limit (GOMEMLIMIT, which the
// Kubernetes manifests set) still makes the collector run earlier.
//
// It owns that one setting. It must not be used where the operator chose
// GOGC: Keep does nothing when the GOGC environment variable is set.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// minHeap is Go's least heap goal at GOGC 100 (4 MiB); the runtime scales
// it with GOGC, so GOGC never needs to exceed growth/minHeap × 100.
const minHeap = 4 << 20

const (
	// ratio is the growth allowed per byte live between collections.
	ratio = 4
	// least is the growth a small heap gets whatever it holds (or most,
	// when less).
	least = 16 << 20
)

// Growth returns how far the heap may grow past live bytes before the next
// collection: ratio times live, at least least (or most, when less), at
// most most.
func Growth(live, most uint64) uint64 {
	return min(max(ratio*live, min(least, most)), most)
}

// GOGC returns the GOGC percentage that lets the heap grow by Growth(live,
// most) before the next collection, for a collection that found live
// bytes to scan (Go applies GOGC to the live heap, the stacks and the
// globals together, and scales its 4 MiB least goal with it): at least
// 100, and no more than makes that least goal the growth.
func GOGC(live, most uint64) int {
	live = max(live, 1)
	grow := Growth(live, most)
	return int(max(100, min((grow*100+live-1)/live, grow*100/minHeap)))
}

// Keep sets GOGC after every collection from the live heap it left, for a
// growth of at most most bytes (0: nothing), until stop is called. It does
// nothing when GOGC is set in the environment.
func Keep(most uint64) (stop func()) {
	if most == 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	return start(&tuner{floor: most})
}

func start(t *tuner) (stop func()) {
	t.arm()
	t.tune()
	return func() { t.stopped.Store(true) }
}

type tuner struct {
	floor   uint64 // the most growth
	stopped atomic.Bool
	mu      sync.Mutex // cleanups may run at once; guards last
	last    int
	tuned   func(gogc int) // tests: told after each tune
}

// arm makes the next collection call tune: a cleanup on an object nothing
// refers to runs after the first collection that finds it unreachable.
func (t *tuner) arm() {
	runtime.AddCleanup(new([32]byte), func(t *tuner) {
		if t.stopped.Load() {
			return
		}
		t.arm() // before tuning: a collection right after it is seen too
		t.tune()
	}, t)
}

// scanned names what the last collection found live: GOGC applies to their
// sum (the heap goal is the live heap plus GOGC percent of all three).
var scanned = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// tune sets GOGC for what the last collection left, when it changed by
// more than a tenth.
func (t *tuner) tune() {
	s := make([]metrics.Sample, len(scanned))
	for i, name := range scanned {
		s[i].Name = name
	}
	metrics.Read(s)
	var live uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			live += v.Value.Uint64()
		}
	}
	p := GOGC(live, t.floor)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == 0 || p > t.last*11/10 || p < t.last*9/10 {
		debug.SetGCPercent(p)
		t.last = p
	}
	if t.tuned != nil {
		t.tuned(t.last)
	}
}
