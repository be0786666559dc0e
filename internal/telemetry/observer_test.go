package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/policy"
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
