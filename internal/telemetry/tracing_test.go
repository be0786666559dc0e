package telemetry_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// TestCheckSpans: over a real gRPC ext_authz server, each check is one
// portcullis.check span, a child of the trace context the CheckRequest
// carries (W3C traceparent, B3 multi-header, B3 single header; a root span
// without any), with the decision's reason, tier, tenant kind and policy
// version, and no credential, tenant or user among its attributes. A JWK
// set fetch a check waits for is a portcullis.jwks_fetch child of it.
func TestCheckSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracing := telemetry.NewTracing(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	demo := testkit.Load(t, "three-tiers")
	staffSet, err := os.ReadFile(filepath.Join(demo.Dir, "staff-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	idp := testkit.NewIdP(t, staffSet)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(demo.Dir)); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	raw, _ := os.ReadFile(pol)
	if err := os.WriteFile(pol, []byte(strings.Replace(string(raw), "jwks: { file: staff-jwks.json }", `jwks: { uri: "`+idp.URL()+`" }`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := cache.NewRegistry(cache.RemoteOptions{Trace: tracing.Fetch}, false)
	snap, err := policy.Load(pol, policy.LoadOptions{JWKS: reg})
	if err != nil {
		t.Fatal(err)
	}
	reg.Commit(snap.Remotes())
	m := telemetry.NewMetrics(func() *policy.Engine { return nil })
	obs := telemetry.NewObserver(m, slog.New(slog.DiscardHandler), nil)
	obs.Trace(tracing)
	srv := extauthz.NewServer(policy.NewEngine(snap, policy.EngineOptions{}), obs).NewGRPCServer()
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)

	key := demo.Key(t, "acme")
	rootKey := demo.Key(t, "root")
	rootTok := demo.Token(t, "root-access", time.Now(), time.Hour, nil)
	const traceID, parentID = "4bf92f3577b34ef6a0ba1a6a0e6cd1a1", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name    string
		headers map[string]string
		parent  bool
	}{
		{"traceparent", map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01"}, true},
		{"b3 multi", map[string]string{"x-b3-traceid": traceID, "x-b3-spanid": parentID, "x-b3-sampled": "1"}, true},
		{"b3 single", map[string]string{"b3": traceID + "-" + parentID + "-1"}, true},
		{"none", map[string]string{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Ended())
			h := map[string]string{"x-api-key": key, "authorization": "None"}
			for k, v := range tc.headers {
				h[k] = v
			}
			resp, err := c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/images", Headers: h}}}})
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("%v %v", resp, err)
			}
			spans := rec.Ended()[before:]
			if len(spans) != 1 || spans[0].Name() != telemetry.CheckSpan || spans[0].SpanKind() != trace.SpanKindServer {
				t.Fatalf("spans %v", names(spans))
			}
			s := spans[0]
			if got := s.Parent(); tc.parent != got.IsValid() || tc.parent && (got.TraceID().String() != traceID || got.SpanID().String() != parentID) {
				t.Errorf("parent %v (want trace %s span %s: %v)", got, traceID, parentID, tc.parent)
			}
			if tc.parent && s.SpanContext().TraceID().String() != traceID {
				t.Errorf("trace id %s", s.SpanContext().TraceID())
			}
			attrs := attributes(s)
			for k, want := range map[string]string{telemetry.AttrReason: "allowed", telemetry.AttrTier: "service",
				telemetry.AttrTenantKind: "organization", telemetry.AttrPolicyVersion: snap.Version(), telemetry.AttrTransport: "grpc"} {
				if attrs[k] != want {
					t.Errorf("%s = %q, want %q", k, attrs[k], want)
				}
			}
			for k, v := range attrs {
				for _, secret := range []string{key, "acme"} {
					if strings.Contains(v, secret) {
						t.Errorf("attribute %s holds the key or the tenant: %q", k, v)
					}
				}
			}
		})
	}

	// The first staff token waits for the staff key set: its fetch is a
	// child span of that check.
	before := len(rec.Ended())
	resp, err := c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/predictors", Headers: map[string]string{
			"x-api-key": rootKey, "authorization": "Bearer " + rootTok, "traceparent": "00-" + traceID + "-" + parentID + "-01"}}}}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("%v %v", resp, err)
	}
	spans := rec.Ended()[before:]
	var check, fetch sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.Name() {
		case telemetry.CheckSpan:
			check = s
		case telemetry.FetchSpan:
			fetch = s
		}
	}
	if check == nil || fetch == nil {
		t.Fatalf("spans %v", names(spans))
	}
	if fetch.Parent().SpanID() != check.SpanContext().SpanID() || attributes(fetch)["url.full"] != idp.URL() {
		t.Errorf("fetch span parent %v (check %v), attributes %v", fetch.Parent().SpanID(), check.SpanContext().SpanID(), attributes(fetch))
	}
	for k, v := range attributes(check) {
		if strings.Contains(v, rootTok) || strings.Contains(v, rootKey) || strings.Contains(v, "root@") {
			t.Errorf("attribute %s holds a credential or the user: %q", k, v)
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attributes(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, a := range s.Attributes() {
		out[string(a.Key)] = a.Value.String()
	}
	return out
}
