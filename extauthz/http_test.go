package extauthz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

func forwardAuth(t *testing.T, opts extauthz.HTTPOptions) (*httptest.Server, *testkit.Demo) {
	t.Helper()
	demo := testkit.Load(t, "three-tiers")
	snap, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := extauthz.NewHTTPHandler(policy.NewEngine(snap, policy.EngineOptions{}), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, demo
}

type fwdResp struct {
	status int
	header http.Header
	body   map[string]string
}

func ask(t *testing.T, srv *httptest.Server, method, path string, h map[string]string) fwdResp {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := fwdResp{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("deny body %q: %v", b, err)
		}
	}
	return r
}

func TestForwardAuthModes(t *testing.T) {
	srv, demo := forwardAuth(t, extauthz.HTTPOptions{PathPrefix: "/authz"})
	key := demo.Key(t, "acme")
	alice := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	for _, tc := range []struct {
		name         string
		method, path string
		h            map[string]string
		status       int
		tier, reason string
	}{
		{"traefik read", "GET", "/", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/images/1?x=1", "X-Forwarded-Host": "api", "X-Api-Key": key}, 200, "service", ""},
		{"traefik write needs admin", "GET", "/", map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/images", "X-Api-Key": key}, 403, "", "tier_too_low"},
		{"traefik admin", "GET", "/", map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/images", "X-Api-Key": key, "Authorization": "Bearer " + alice}, 200, "admin", ""},
		{"nginx read", "GET", "/auth", map[string]string{"X-Original-URI": "/images", "X-Original-Method": "GET", "X-Api-Key": key}, 200, "service", ""},
		{"nginx bad path", "GET", "/auth", map[string]string{"X-Original-URI": "/images/../predictors", "X-Api-Key": key}, 400, "", "bad_path"},
		{"nginx no key", "GET", "/auth", map[string]string{"X-Original-URI": "/images"}, 401, "", "missing_credential"},
		{"envoy http_service", "GET", "/authz/images?size=1", map[string]string{"X-Api-Key": key}, 200, "service", ""},
		{"envoy http_service write", "DELETE", "/authz/images/1", map[string]string{"X-Api-Key": key, "Authorization": "Bearer " + alice}, 200, "admin", ""},
		{"envoy outside the prefix", "GET", "/images", map[string]string{"X-Api-Key": key}, 400, "", "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, srv, tc.method, tc.path, tc.h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%v)", r.status, tc.status, r.body)
			}
			if tc.status == 200 {
				if r.header.Get("X-Auth-Tier") != tc.tier || r.header.Get("X-Tenant-Id") != "acme" {
					t.Errorf("headers %v", r.header)
				}
				remove := r.header.Get(extauthz.RemoveHeader)
				for _, h := range []string{"x-selected-customer", "x-api-key", "authorization"} {
					if !strings.Contains(remove, h) {
						t.Errorf("%s lacks %s: %q", extauthz.RemoveHeader, h, remove)
					}
				}
				if strings.HasPrefix(tc.name, "envoy") != (r.header.Get("X-Envoy-Auth-Headers-To-Remove") != "") {
					t.Errorf("x-envoy-auth-headers-to-remove = %q", r.header.Get("X-Envoy-Auth-Headers-To-Remove"))
				}
				return
			}
			if r.body["reason"] != tc.reason || r.header.Get(extauthz.ReasonHeader) != tc.reason || r.body["error"] == "" {
				t.Errorf("deny %v %v", r.body, r.header)
			}
			if (r.status == 401) != (r.header.Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q on %d", r.header.Get("WWW-Authenticate"), r.status)
			}
			if r.header.Get("X-Tenant-Id") != "" {
				t.Error("a deny carries identity headers")
			}
		})
	}
}

// TestForwardAuthUntrustedPeer: forwarded headers from a peer outside the
// trusted proxies are not believed; the request is denied.
func TestForwardAuthUntrustedPeer(t *testing.T) {
	srv, demo := forwardAuth(t, extauthz.HTTPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	r := ask(t, srv, "GET", "/", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/images", "X-Api-Key": demo.Key(t, "acme")})
	if r.status != 403 || r.body["reason"] != "untrusted_proxy" {
		t.Fatalf("%d %v", r.status, r.body)
	}
}

// TestForwardAuthPinnedMode: with the mode pinned to envoy, a client's own
// X-Original-URI cannot choose the path that is checked.
func TestForwardAuthPinnedMode(t *testing.T) {
	srv, demo := forwardAuth(t, extauthz.HTTPOptions{Mode: extauthz.ModeEnvoy})
	r := ask(t, srv, "POST", "/images", map[string]string{"X-Original-URI": "/images", "X-Original-Method": "GET", "X-Api-Key": demo.Key(t, "acme")})
	if r.status != 403 || r.body["reason"] != "tier_too_low" {
		t.Fatalf("%d %v: the client's X-Original-Method was believed", r.status, r.body)
	}
	if _, err := extauthz.NewHTTPHandler(nil, nil, extauthz.HTTPOptions{Mode: "haproxy"}); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := extauthz.ParseTrustedProxies("10.0.0.0/8, 192.168.1.7 ,::1/128")
	if err != nil || len(got) != 3 || got[1].String() != "192.168.1.7/32" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := extauthz.ParseTrustedProxies("10.0.0.0/33"); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}
