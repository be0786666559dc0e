package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestServeOIDCDiscovery: the real binary on a policy whose issuers give
// discovery: true instead of a key set. While the provider is slow to
// answer the replica is not ready, and checks that need no token are
// answered all the same; once it answers, tokens verify with the keys of
// its jwks_uri. An issuer whose discovery document names another issuer is
// unusable: its tokens are 503 jwks_unavailable and the log says why.
func TestServeOIDCDiscovery(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	customersSet, err := os.ReadFile(filepath.Join(demo.Dir, "customers-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	staffSet, _ := os.ReadFile(filepath.Join(demo.Dir, "staff-jwks.json"))
	customers := testkit.NewOIDC(t, customersSet)
	staff := testkit.NewOIDC(t, staffSet)
	staff.Claim("https://staff.example.com") // not its own address: must not be used

	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	editFile(t, pol, "issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_DEMOcust1\n    jwks: { file: customers-jwks.json }",
		"issuer: "+customers.Issuer()+"\n    discovery: true")
	editFile(t, pol, "issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_DEMOstaff\n    jwks: { file: staff-jwks.json }",
		"issuer: "+staff.Issuer()+"\n    jwks: { discovery: true }")
	if code, out, errOut := runBinary(t, dir, "validate", "policy.yaml"); code != 0 {
		t.Fatalf("validate: %d %s %s", code, out, errOut)
	}

	customers.Hold()
	p := startServe(t, "--policy", pol)
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	key := demo.Key(t, "acme")
	ask := func(method string, h map[string]string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := c.Check(ctx, checkReq(method, "/images", h))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200, "allowed"
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode()), resp.GetStatus().GetMessage()
	}
	if code, _ := p.get(t, "/readyz"); code != 503 {
		t.Errorf("discovery in flight: /readyz %d, want 503", code)
	}
	if code, why := ask("GET", map[string]string{"x-api-key": key, "authorization": "None"}); code != 200 {
		t.Errorf("a key-only check while discovery is slow: %d %s", code, why)
	}
	customers.Release()
	p.waitFor(t, func(m map[string]any) bool {
		return m["msg"] == "JWK set fetched" && m["uri"] == customers.Issuer()+"/.well-known/openid-configuration"
	})
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Errorf("after discovery: /readyz %d %s", code, body)
	}
	alice := demo.Token(t, "alice-access", time.Now(), time.Hour, map[string]any{"iss": customers.Issuer()})
	if code, why := ask("POST", map[string]string{"x-api-key": key, "authorization": "Bearer " + alice}); code != 200 {
		t.Errorf("a token of the discovered issuer: %d %s", code, why)
	}
	if customers.Hits("/keys/1.json") == 0 {
		t.Error("the key set was not fetched from the document's jwks_uri")
	}

	root := demo.Token(t, "root-access", time.Now(), time.Hour, map[string]any{"iss": staff.Issuer()})
	if code, why := ask("GET", map[string]string{"x-api-key": demo.Key(t, "root"), "authorization": "Bearer " + root}); code != 503 || why != "jwks_unavailable" {
		t.Errorf("a token of an issuer whose document names another: %d %s, want 503 jwks_unavailable", code, why)
	}
	p.waitFor(t, func(m map[string]any) bool {
		e, _ := m["error"].(string)
		return m["msg"] == "JWK set fetch failed; serving the last good set, if any" && strings.Contains(e, `names issuer "https://staff.example.com"`)
	})
	if staff.Hits("/keys/1.json") != 0 {
		t.Error("the mismatched document's jwks_uri was fetched")
	}
}
