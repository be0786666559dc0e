// Package gcfloor keeps the garbage collector from running more often than
// a heap of a given size would make it run. Go collects when the heap has
// grown by GOGC percent of what the last collection kept (100%: it doubles),
// and at 4 MB at the least; a server whose live heap is a few megabytes then
// collects dozens of times a second under load, and the marking and stack
// scanning of those cycles cost more than its checks. After every
// collection Keep raises GOGC so that the next one comes after at least
// floor bytes of growth, never lowering it below Go's 100: a heap that is
// large already (a million keys, a full token cache) is collected as Go
// would, so memory stays what it was, and a memory limit (GOMEMLIMIT, which
// the Kubernetes manifests set) still makes the collector run earlier.
//
// It owns that one setting. It must not be used where the operator chose
// GOGC: Keep does nothing when the GOGC environment variable is set.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// GOGC returns the GOGC percentage that gives a heap of live bytes at least
// floor bytes of growth before the next collection: at least 100, at most
// 10,000.
func GOGC(live, floor uint64) int {
	live = max(live, 1)
	return int(min(max(100, (floor*100+live-1)/live), 10_000))
}

// Keep sets GOGC after every collection from the live heap it left, for a
// floor of floor bytes (0: nothing), until stop is called. It does nothing
// when GOGC is set in the environment.
func Keep(floor uint64) (stop func()) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	return start(&tuner{floor: floor})
}

func start(t *tuner) (stop func()) {
	t.tune()
	t.arm()
	return func() { t.stopped.Store(true) }
}

type tuner struct {
	floor   uint64
	stopped atomic.Bool
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
		t.tune()
		t.arm()
	}, t)
}

// tune sets GOGC for the live heap the last collection left, when it
// changed by more than a tenth.
func (t *tuner) tune() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := GOGC(s[0].Value.Uint64(), t.floor)
	if t.last == 0 || p > t.last*11/10 || p < t.last*9/10 {
		debug.SetGCPercent(p)
		t.last = p
	}
	if t.tuned != nil {
		t.tuned(t.last)
	}
}
