package credits_test

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/internal/testkit"
)

// BenchmarkAdmit measures an admission as checks make them, from every
// core at once, against a real PostgreSQL: nearly all of them spend units
// in hand (no lock, no call); a take every few thousand.
//
//	go test -run '^$' -bench Admit -cpu 1,2 ./credits
func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	s := bank(b, testkit.SharedPostgreSQL(b))
	w := wallet(b, s, "org-bench", 1_000_000_000_000)
	l := credits.NewLedger(s, "replica-bench", credits.Options{})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go l.Run(rctx, nil)                                    // settles, and sizes blocks to the spending, as a server does
	for o := credits.Unavailable; o != credits.Admitted; { // the pool's first connection is not what is measured
		o, _ = l.Admit(ctx, "org-bench", 1, w)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if o, _ := l.Admit(ctx, "org-bench", 1, w); o != credits.Admitted {
				b.Errorf("outcome %v", o)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(l.Stats().Takes)/float64(b.N)*1e6, "takes/1M")
}
