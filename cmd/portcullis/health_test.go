package main

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestHealthFollowsReadiness: the gRPC health service a proxy checks says
// NOT_SERVING until the server can decide (here: its one remote JWK set,
// held by the IdP, has not been fetched), then SERVING; on SIGTERM with
// --shutdown-delay it says NOT_SERVING at once while checks are still
// answered, and the process exits 0 after the delay.
func TestHealthFollowsReadiness(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	set, err := os.ReadFile(filepath.Join(demo.Dir, "customers-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	idp := testkit.NewOIDC(t, set)
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	editFile(t, pol, "issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_DEMOcust1\n    jwks: { file: customers-jwks.json }",
		"issuer: "+idp.Issuer()+"\n    discovery: true")
	idp.Hold()
	p := startServe(t, "--policy", pol, "--shutdown-delay", "5s")
	conn := dial(t, p.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if s := next(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before the key set was fetched: %s", s)
	}
	if code, _ := p.get(t, "/readyz"); code != 503 {
		t.Fatalf("/readyz %d before the key set was fetched", code)
	}
	idp.Release()
	if s := next(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("once ready: %s", s)
	}

	p.signal(t, syscall.SIGTERM)
	if s := next(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("draining: %s", s)
	}
	p.waitFor(t, msgIs("draining: health NOT_SERVING; answering checks a while longer"))
	c := authv3.NewAuthorizationClient(conn)
	resp, err := c.Check(ctx, checkReq("GET", "/images", map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "None"}))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("a check during the shutdown delay: %v %v", resp, err)
	}
	if code, _ := p.get(t, "/readyz"); code != 503 {
		t.Errorf("/readyz %d while draining", code)
	}
	if code := p.waitExit(t); code != 0 {
		t.Errorf("exit %d after the delay", code)
	}
}
