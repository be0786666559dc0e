package telemetry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// BenchmarkObserve: what every check costs its observer (metrics, usage,
// no debug log, no tracing), from GOMAXPROCS goroutines at once (-cpu 1,2,4).
func BenchmarkObserveParallel(b *testing.B) {
	o := NewObserver(NewMetrics(func() *policy.Engine { return nil }), slog.New(slog.NewTextHandler(io.Discard, nil)), keys.NewUsage())
	d := policy.Decision{Allow: true, Reason: reason.Allowed, Tier: "admin", Credential: "k1"}
	info := extauthz.CheckInfo{Transport: "grpc", RequestID: "r", Method: "GET", Path: "/"}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			info.Done = time.Now() // as the transports read the clock once a check
			o.Observe(o.Begin(ctx, nil), info, d, time.Microsecond)
		}
	})
}
