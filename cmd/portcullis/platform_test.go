package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestServePlatformExample runs the platform example as its README says,
// with its next policy as the shadow, and the staff issuer's discovery on a
// loopback provider: hosts pick the routes (a malformed host is 400), the
// upstream gets the decision id in x-decision-id, deny bodies carry it,
// and the shadow policy's stricter DELETE is a logged disagreement while
// the answer stays the live one.
func TestServePlatformExample(t *testing.T) {
	demo := testkit.Load(t, "three-tiers") // any RS256 set will do for the staff issuer
	set, _ := os.ReadFile(filepath.Join(demo.Dir, "staff-jwks.json"))
	idp := testkit.NewOIDC(t, set)
	dir := t.TempDir()
	copyExample(t, "platform", dir)
	for _, f := range []string{"policy.yaml", "policy.next.yaml"} {
		editFile(t, filepath.Join(dir, f), "issuer: https://login.example.com/realms/staff", "issuer: "+idp.Issuer())
	}
	p := startServe(t, "--policy", filepath.Join(dir, "policy.yaml"), "--shadow-policy", filepath.Join(dir, "policy.next.yaml"))
	p.waitFor(t, msgIs("JWK set fetched"))
	platform := testkit.Load(t, "platform")
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	ask := func(method, host, path, rid, key string) *authv3.CheckResponse {
		t.Helper()
		req := checkReq(method, path, map[string]string{"x-api-key": platform.Key(t, key), "x-request-id": rid, "x-decision-id": "forged"})
		req.Attributes.Request.Http.Host = host
		resp, err := c.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	header := func(resp *authv3.CheckResponse, name string) string {
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == name {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}
	r := ask("DELETE", "eu.api.example.com", "/v1/events/7", "rid-delete", "acme-write")
	if r.GetOkResponse() == nil || header(r, "x-decision-id") != "rid-delete" || header(r, "x-tenant-id") != "acme" {
		t.Fatalf("a write key deleting on a regional API host: %v", r)
	}
	p.waitFor(t, func(m map[string]any) bool {
		return m["msg"] == "shadow disagreement" && m["request_id"] == "rid-delete" && m["shadow_reason"] == "tier_too_low"
	})
	for _, tc := range []struct{ host, reason string }{{"admin.example.com", "tier_too_low"}, {"api.example.org", "no_route"}, {"api example.com", "bad_request"}} {
		r := ask("GET", tc.host, "/v1/reports", "rid-"+tc.reason, "acme-read")
		var body struct{ Reason, ID string }
		_ = json.Unmarshal([]byte(r.GetDeniedResponse().GetBody()), &body)
		if body.Reason != tc.reason || body.ID != "rid-"+tc.reason {
			t.Errorf("host %q: %s", tc.host, r.GetDeniedResponse().GetBody())
		}
	}
	if strings.Contains(p.log(), platform.Key(t, "acme-write")) {
		t.Error("a key is in the log")
	}
}
