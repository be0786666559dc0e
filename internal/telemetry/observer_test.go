package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// TestPanicsAreCountedAndLogged: a recovered panic is counted by where it
// happened and logged with its stack; a panic value that might hold
// request data is described by its type only.
func TestPanicsAreCountedAndLogged(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(func() *policy.Engine { return policy.NewEngine(nil, policy.EngineOptions{}) })
	o := NewObserver(m, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	o.Panicked(context.Background(), "grpc", "token eyJsecret", []byte("goroutine 7 [running]:\nmain.f()"))
	o.Panicked(context.Background(), "engine", errors.New("boom"), []byte("goroutine 8"))
	if got := testutil.ToFloat64(m.panics.WithLabelValues("grpc")); got != 1 {
		t.Errorf("portcullis_panics_total{where=grpc} = %v", got)
	}
	if got := testutil.ToFloat64(m.panics.WithLabelValues("forward-auth")); got != 0 {
		t.Errorf("portcullis_panics_total{where=forward-auth} = %v", got)
	}
	log := buf.String()
	if strings.Count(log, `"msg":"check panicked; denied 503"`) != 2 || !strings.Contains(log, "goroutine 7 [running]") {
		t.Errorf("log:\n%s", log)
	}
	if strings.Contains(log, "eyJsecret") {
		t.Error("the panic value was logged")
	}
}

// TestChecksCountedBySeries: each check is counted, and its latency
// observed, under its own labels, however many label sets checks on many
// goroutines at once make (the observer keeps the series it has made).
func TestChecksCountedBySeries(t *testing.T) {
	m := NewMetrics(func() *policy.Engine { return policy.NewEngine(nil, policy.EngineOptions{}) })
	o := NewObserver(m, slog.New(slog.DiscardHandler), nil)
	type labels struct {
		transport, tier string
		allow           bool
		reason          reason.Code
	}
	var sets []labels
	for _, tr := range []string{"grpc", "http"} {
		for _, tier := range []string{"", "service", "admin", "superuser"} {
			sets = append(sets, labels{tr, tier, true, reason.Allowed}, labels{tr, tier, false, reason.MissingCredential},
				labels{tr, tier, false, reason.InvalidToken})
		}
	}
	const each = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range each * len(sets) / 8 {
				l := sets[(g+i*8)%len(sets)]
				o.Observe(context.Background(), extauthz.CheckInfo{Transport: l.transport, Done: time.Now()},
					policy.Decision{Allow: l.allow, Tier: l.tier, Reason: l.reason}, time.Duration(i)*time.Microsecond)
			}
		})
	}
	wg.Wait()
	for _, l := range sets {
		result := "deny"
		if l.allow {
			result = "allow"
		}
		if got := testutil.ToFloat64(m.checks.WithLabelValues(l.transport, result, l.tier, string(l.reason))); got != each {
			t.Errorf("portcullis_checks_total{transport=%q,result=%q,tier=%q,reason=%q} = %v, want %d", l.transport, result, l.tier, l.reason, got, each)
		}
	}
	for _, tr := range []string{"grpc", "http"} {
		want := uint64(each * len(sets) / 2)
		if got := histogramCount(t, m, tr); got != want {
			t.Errorf("portcullis_check_duration_seconds_count{transport=%q} = %d, want %d", tr, got, want)
		}
	}
}

// histogramCount is how many latencies m observed for transport.
func histogramCount(t *testing.T, m *Metrics, transport string) uint64 {
	t.Helper()
	var out dto.Metric
	if err := m.latency.WithLabelValues(transport).(prometheus.Histogram).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}
