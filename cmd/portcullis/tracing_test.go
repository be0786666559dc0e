package main

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/internal/testkit"
)

// otlpSink is a loopback OTLP trace receiver, over HTTP (protobuf) or gRPC.
type otlpSink struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	more  chan struct{} // signalled on every export
}

func (s *otlpSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans = append(s.spans, ss.GetSpans()...)
		}
	}
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// wait returns the span named name in trace, waiting for exports.
func (s *otlpSink) wait(t *testing.T, trace, name string) *tracepb.Span {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		for _, sp := range s.spans {
			if hex.EncodeToString(sp.GetTraceId()) == trace && sp.GetName() == name {
				s.mu.Unlock()
				return sp
			}
		}
		s.mu.Unlock()
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("no %s span of trace %s exported", name, trace)
		}
	}
}

// TestServeExportsTraces: with the standard OTEL_EXPORTER_OTLP_* variables
// set, the real binary exports one portcullis.check span per check to an
// OTLP receiver, over HTTP and over gRPC, as a child of the CheckRequest's
// traceparent, with the decision's reason, tier, tenant kind and policy
// version.
func TestServeExportsTraces(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			sink := &otlpSink{more: make(chan struct{}, 1)}
			var endpoint string
			if protocol == "grpc" {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				g := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(g, sink)
				go func() { _ = g.Serve(lis) }()
				t.Cleanup(g.Stop)
				endpoint = "http://" + lis.Addr().String()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					req := &coltracepb.ExportTraceServiceRequest{}
					if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
						http.Error(w, "bad export", http.StatusBadRequest)
						return
					}
					resp, _ := sink.Export(r.Context(), req)
					b, _ := proto.Marshal(resp)
					w.Header().Set("Content-Type", "application/x-protobuf")
					_, _ = w.Write(b)
				}))
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			p := startServeEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_SERVICE_NAME=portcullis-test"}, "--policy", demo.Policy())
			c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
			const trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
			resp, err := c.Check(context.Background(), checkReq("POST", "/images", map[string]string{
				"x-api-key": demo.Key(t, "acme"), "authorization": "None", "traceparent": "00-" + trace + "-" + parent + "-01"}))
			if err != nil || resp.GetDeniedResponse() == nil {
				t.Fatalf("%v %v", resp, err)
			}
			sp := sink.wait(t, trace, "portcullis.check")
			if hex.EncodeToString(sp.GetParentSpanId()) != parent || sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("parent %x kind %v", sp.GetParentSpanId(), sp.GetKind())
			}
			attrs := map[string]string{}
			for _, kv := range sp.GetAttributes() {
				attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for k, want := range map[string]string{"portcullis.reason": "tier_too_low", "portcullis.tier": "service", "portcullis.tenant_kind": ""} {
				if attrs[k] != want {
					t.Errorf("%s = %q, want %q", k, attrs[k], want)
				}
			}
			if len(attrs["portcullis.policy_version"]) != 12 {
				t.Errorf("policy version %q", attrs["portcullis.policy_version"])
			}
		})
	}
}
