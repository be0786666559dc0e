package gcfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestGOGC: the heap grows by four times what is live, by at least 16 MiB
// and at most the most; a heap past the most keeps Go's 100; nothing past
// the bounds.
func TestGOGC(t *testing.T) {
	for _, c := range []struct {
		live, most uint64
		want       int
	}{
		{4 << 20, 64 << 20, 400},    // 4 MiB live (a small policy): 16 MiB more
		{5 << 20, 64 << 20, 400},    // 20 MiB more
		{12 << 20, 64 << 20, 400},   // cached tokens: 48 MiB more
		{32 << 20, 64 << 20, 200},   // the most: 64 MiB more
		{64 << 20, 64 << 20, 100},   // as large as the most: Go's default
		{500 << 20, 64 << 20, 100},  // a million keys: as Go would
		{0, 64 << 20, 400},          // nothing live: Go's least goal (4 MiB × GOGC/100) becomes the least growth
		{300 << 10, 64 << 20, 400},  // a few hundred KiB: the same, not 100 times the heap
		{4 << 20, 8 << 20, 200},     // a most below the least: the most
		{100 << 20, 150 << 20, 150}, // between
	} {
		if got := GOGC(c.live, c.most); got != c.want {
			t.Errorf("GOGC(%d, %d) = %d, want %d", c.live, c.most, got, c.want)
		}
	}
}

// TestKeepFollowsTheLiveHeap: a small live heap gets a large GOGC at once;
// after a collection that finds the heap grown past the most, GOGC is Go's
// 100 again (memory is not doubled twice over); once that heap is garbage,
// the next collections raise it again; stop ends the tuning.
func TestKeepFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuned := make(chan int, 64)
	tn := &tuner{floor: 64 << 20, tuned: func(p int) { tuned <- p }}
	stop := start(tn)
	wait := func(want func(int) bool, what string) {
		t.Helper()
		for {
			select {
			case p := <-tuned:
				if want(p) {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("GOGC never became %s", what)
			}
			runtime.GC() // the next collection runs the next tune
		}
	}
	wait(func(p int) bool { return p == 400 }, "the least growth's for a small heap")
	live := make([]byte, 96<<20)
	for i := range live {
		live[i] = 1 // resident, and live until the end of the wait
	}
	runtime.GC()
	wait(func(p int) bool { return p == 100 }, "100 for a heap past the most")
	runtime.KeepAlive(live)
	live = nil
	runtime.GC()
	wait(func(p int) bool { return p == 400 }, "the least growth's again once the heap is garbage")
	stop()
	if p := debug.SetGCPercent(100); p != 400 {
		t.Fatalf("GOGC %d while tuned, want Keep's last value, 400", p)
	}
	runtime.GC()
	runtime.GC()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("GOGC %d after stop, want it left alone", p)
	}
}

// TestKeepLeavesTheOperatorsGOGC: with GOGC set, Keep changes nothing.
func TestKeepLeavesTheOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	stop := Keep(256 << 20)
	defer stop()
	runtime.GC()
	if p := debug.SetGCPercent(150); p != 150 {
		t.Fatalf("GOGC %d, want the operator's 150", p)
	}
}
