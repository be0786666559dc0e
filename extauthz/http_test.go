package extauthz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// publicPolicy copies three-tiers with one more route, public /healthz: the
// route a forged forwarded request would aim for (RT-01).
func publicPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := testkit.Example("three-tiers")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "policy.yaml" {
			b = []byte(strings.Replace(string(b), "routes:\n", "routes:\n  - { path: /healthz, public: true }\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "policy.yaml")
}

func handler(t *testing.T, opts extauthz.HTTPOptions) (*extauthz.HTTPHandler, *testkit.Demo) {
	t.Helper()
	demo := testkit.Load(t, "three-tiers")
	snap, err := policy.Load(publicPolicy(t), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := extauthz.NewHTTPHandler(policy.NewEngine(snap, policy.EngineOptions{}), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h, demo
}

type fwdResp struct {
	status int
	header http.Header
	body   map[string]string
}

func (r fwdResp) reason() string { return r.header.Get(extauthz.ReasonHeader) }

// serveOne hands one forward-auth request to h as if from a loopback peer.
// Header values are set exactly as given, repeated names as several values.
func serveOne(t *testing.T, h http.Handler, method, target string, headers [][2]string) fwdResp {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	for _, kv := range headers {
		req.Header.Add(kv[0], kv[1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := fwdResp{status: rec.Code, header: rec.Header()}
	if b := rec.Body.Bytes(); len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("deny body %q: %v", b, err)
		}
	}
	return r
}

// asProxy describes the original request (method, request target, host) in
// the headers of mode's proxy, and returns the forward-auth request's own
// method and target.
func asProxy(mode, method, target string) (string, string, [][2]string) {
	switch mode {
	case extauthz.ModeTraefik:
		return "GET", "/", [][2]string{{"X-Forwarded-Method", method}, {"X-Forwarded-Uri", target}, {"X-Forwarded-Host", "api.example.com"}}
	case extauthz.ModeNginx:
		return "GET", "/_portcullis", [][2]string{{"X-Original-Method", method}, {"X-Original-Uri", target}, {"X-Original-Host", "api.example.com"}}
	case extauthz.ModeIngressNginx:
		return "GET", "/", [][2]string{{"X-Original-Method", method}, {"X-Original-Url", "https://api.example.com" + target},
			{"X-Sent-From", "nginx-ingress-controller"}, {"X-Auth-Request-Redirect", target}}
	}
	return method, "/authz" + target, nil
}

func TestForwardAuthModes(t *testing.T) {
	key := ""
	for _, tc := range []struct {
		name, mode, method, target string
		creds                      map[string]string
		status                     int
		tier, reason               string
	}{
		{"traefik read", extauthz.ModeTraefik, "GET", "/images/1?x=1", map[string]string{"X-Api-Key": "key"}, 200, "service", ""},
		{"traefik write needs admin", extauthz.ModeTraefik, "POST", "/images", map[string]string{"X-Api-Key": "key"}, 403, "", "tier_too_low"},
		{"traefik admin", extauthz.ModeTraefik, "POST", "/images", map[string]string{"X-Api-Key": "key", "Authorization": "alice"}, 200, "admin", ""},
		{"nginx read", extauthz.ModeNginx, "GET", "/images", map[string]string{"X-Api-Key": "key"}, 200, "service", ""},
		{"nginx bad path", extauthz.ModeNginx, "GET", "/images/../predictors", map[string]string{"X-Api-Key": "key"}, 400, "", "bad_path"},
		{"nginx no key", extauthz.ModeNginx, "GET", "/images", nil, 401, "", "missing_credential"},
		{"ingress-nginx read", extauthz.ModeIngressNginx, "GET", "/images?size=1", map[string]string{"X-Api-Key": "key"}, 200, "service", ""},
		{"ingress-nginx write", extauthz.ModeIngressNginx, "DELETE", "/images/1", map[string]string{"X-Api-Key": "key", "Authorization": "alice"}, 200, "admin", ""},
		{"ingress-nginx encoded dots", extauthz.ModeIngressNginx, "GET", "/images/%2e%2e/predictors", map[string]string{"X-Api-Key": "key"}, 400, "", "bad_path"},
		{"envoy http_service", extauthz.ModeEnvoy, "GET", "/images?size=1", map[string]string{"X-Api-Key": "key"}, 200, "service", ""},
		{"envoy http_service write", extauthz.ModeEnvoy, "DELETE", "/images/1", map[string]string{"X-Api-Key": "key", "Authorization": "alice"}, 200, "admin", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, demo := handler(t, extauthz.HTTPOptions{Mode: tc.mode, PathPrefix: "/authz"})
			key = demo.Key(t, "acme")
			alice := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
			method, target, headers := asProxy(tc.mode, tc.method, tc.target)
			headers = append(headers, [2]string{"X-Request-Id", "fw-1"})
			for k, v := range tc.creds {
				v = strings.NewReplacer("key", key, "alice", "Bearer "+alice).Replace(v)
				headers = append(headers, [2]string{k, v})
			}
			r := serveOne(t, h, method, target, headers)
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
				if (tc.mode == extauthz.ModeEnvoy) != (r.header.Get("X-Envoy-Auth-Headers-To-Remove") != "") {
					t.Errorf("x-envoy-auth-headers-to-remove = %q", r.header.Get("X-Envoy-Auth-Headers-To-Remove"))
				}
				return
			}
			if r.body["reason"] != tc.reason || r.reason() != tc.reason || r.body["error"] == "" || r.body["id"] != "fw-1" {
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

// hostile holds, for every header any forward-auth mode reads or a proxy
// might add, a value chosen to turn the request into one the public
// /healthz route allows (RT-01, RT-02).
var hostile = [][2]string{
	{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Host", "evil.example"},
	{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Prefix", "/healthz"},
	{"X-Original-Uri", "/healthz"}, {"X-Original-Url", "http://evil.example/healthz"}, {"X-Original-Method", "GET"},
	{"X-Original-Host", "evil.example"}, {"X-Envoy-Original-Path", "/healthz"}, {"Forwarded", "for=1.2.3.4;host=evil.example;proto=https"},
}

// reads lists the headers each mode takes the checked request from: the
// proxy sets (overwrites) those, so a client's copy never arrives.
var reads = map[string][]string{
	extauthz.ModeTraefik:      {"X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host"},
	extauthz.ModeNginx:        {"X-Original-Method", "X-Original-Uri", "X-Original-Host"},
	extauthz.ModeIngressNginx: {"X-Original-Method", "X-Original-Url"},
	extauthz.ModeEnvoy:        nil,
}

// TestForwardAuthIgnoresOtherFamilies (RT-01, RT-02): with the mode pinned,
// every subset of the other families' headers, each with a value aiming at
// a public route, leaves the decision exactly what it is without them: for
// every mode, a superuser route with a service key, an anonymous write,
// and an allowed read.
func TestForwardAuthIgnoresOtherFamilies(t *testing.T) {
	bases := []struct {
		method, target, key string
	}{
		{"POST", "/predictors", "acme"},
		{"DELETE", "/users/42", ""},
		{"GET", "/images/7", "acme"},
	}
	for mode, own := range reads {
		t.Run(mode, func(t *testing.T) {
			h, demo := handler(t, extauthz.HTTPOptions{Mode: mode, PathPrefix: "/authz"})
			var foreign [][2]string
			for _, kv := range hostile {
				if !containsFold(own, kv[0]) {
					foreign = append(foreign, kv)
				}
			}
			for _, b := range bases {
				method, target, headers := asProxy(mode, b.method, b.target)
				if b.key != "" {
					headers = append(headers, [2]string{"X-Api-Key", demo.Key(t, b.key)})
				}
				want := serveOne(t, h, method, target, headers)
				for mask := 1; mask < 1<<len(foreign); mask++ {
					hs := append([][2]string(nil), headers...)
					for i, kv := range foreign {
						if mask&(1<<i) != 0 {
							hs = append(hs, kv)
						}
					}
					got := serveOne(t, h, method, target, hs)
					if got.status != want.status || got.reason() != want.reason() || got.header.Get("X-Auth-Tier") != want.header.Get("X-Auth-Tier") {
						t.Fatalf("%s %s with %v: %d %s, want %d %s", b.method, b.target, hs[len(headers):],
							got.status, got.reason(), want.status, want.reason())
					}
				}
			}
		})
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// TestForwardAuthAuto: auto mode takes the one header family present; a
// second family's marker, whoever sent it, is a 400, never a choice; no
// family is a 400 (auto never assumes envoy). Headers that mark no family
// change nothing.
func TestForwardAuthAuto(t *testing.T) {
	h, demo := handler(t, extauthz.HTTPOptions{})
	key := [2]string{"X-Api-Key", demo.Key(t, "acme")}
	markers := map[string][][2]string{
		extauthz.ModeTraefik:      {{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/healthz"}},
		extauthz.ModeNginx:        {{"X-Original-Uri", "/healthz"}, {"X-Original-Host", "evil.example"}},
		extauthz.ModeIngressNginx: {{"X-Original-Url", "http://evil.example/healthz"}},
	}
	for mode := range markers {
		method, target, headers := asProxy(mode, "POST", "/predictors")
		headers = append(headers, key)
		if r := serveOne(t, h, method, target, headers); r.status != 403 || r.reason() != "tier_too_low" {
			t.Errorf("auto, %s alone: %d %s, want 403 tier_too_low", mode, r.status, r.reason())
		}
		for other, ms := range markers {
			if other == mode {
				continue
			}
			for _, m := range ms {
				r := serveOne(t, h, method, target, append(append([][2]string(nil), headers...), m))
				if r.status != 400 || r.reason() != "bad_request" {
					t.Errorf("auto, %s plus %s: %d %s, want 400", mode, m[0], r.status, r.reason())
				}
			}
		}
		for _, extra := range [][2]string{{"X-Forwarded-Host", "evil"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Prefix", "/healthz"},
			{"X-Envoy-Original-Path", "/healthz"}, {"Forwarded", "host=evil"}} {
			if containsFold(reads[mode], extra[0]) {
				continue
			}
			r := serveOne(t, h, method, target, append(append([][2]string(nil), headers...), extra))
			if r.status != 403 {
				t.Errorf("auto, %s plus %s: %d, want 403 as without it", mode, extra[0], r.status)
			}
		}
	}
	// Envoy-style: no family at all.
	if r := serveOne(t, h, "POST", "/predictors", [][2]string{key}); r.status != 400 {
		t.Errorf("auto with no family: %d, want 400", r.status)
	}
	// ingress-nginx with auth-method sends X-Original-URI too: one family
	// when both name the same request, else 400.
	ing := [][2]string{key, {"X-Original-Method", "GET"}, {"X-Original-Url", "https://api.example.com/images/1?a=b"}}
	if r := serveOne(t, h, "GET", "/", append(ing, [2]string{"X-Original-Uri", "/images/1?a=b"})); r.status != 200 {
		t.Errorf("ingress-nginx with its own X-Original-URI: %d %s", r.status, r.reason())
	}
	if r := serveOne(t, h, "GET", "/", append(ing, [2]string{"X-Original-Uri", "/healthz"})); r.status != 400 {
		t.Errorf("ingress-nginx with a different X-Original-URI: %d, want 400", r.status)
	}
}

// TestForwardAuthIncomplete (RT-03): a forwarded request without its
// method or URI, with either sent twice, or with an X-Original-URL that is
// not <http|https>://<host><path>, is a 400 in every mode: no method or path
// is ever assumed.
func TestForwardAuthIncomplete(t *testing.T) {
	for mode := range reads {
		if mode == extauthz.ModeEnvoy {
			continue
		}
		h, demo := handler(t, extauthz.HTTPOptions{Mode: mode})
		key := [2]string{"X-Api-Key", demo.Key(t, "acme")}
		method, target, full := asProxy(mode, "DELETE", "/images/1")
		for i := range full[:2] { // the method and the URI (or URL)
			without := append(append([][2]string{key}, full[:i]...), full[i+1:]...)
			if r := serveOne(t, h, method, target, without); r.status != 400 || r.reason() != "bad_request" {
				t.Errorf("%s without %s: %d %s, want 400", mode, full[i][0], r.status, r.reason())
			}
			empty := append([][2]string{key}, full...)
			empty[i+1] = [2]string{full[i][0], ""}
			if r := serveOne(t, h, method, target, empty); r.status != 400 {
				t.Errorf("%s with an empty %s: %d, want 400", mode, full[i][0], r.status)
			}
			twice := append(append([][2]string{key}, full...), full[i])
			if r := serveOne(t, h, method, target, twice); r.status != 400 {
				t.Errorf("%s with %s twice: %d, want 400", mode, full[i][0], r.status)
			}
		}
	}
	// nginx's own auth_request example sets X-Original-URI only.
	h, demo := handler(t, extauthz.HTTPOptions{Mode: extauthz.ModeNginx})
	if r := serveOne(t, h, "GET", "/auth", [][2]string{{"X-Original-Uri", "/images/1"}, {"X-Api-Key", demo.Key(t, "acme")}}); r.status != 400 {
		t.Errorf("nginx without X-Original-Method: %d, want 400 (never the subrequest's GET)", r.status)
	}
	h, demo = handler(t, extauthz.HTTPOptions{Mode: extauthz.ModeIngressNginx})
	for _, u := range []string{"/images/1", "api.example.com/images/1", "ftp://api.example.com/images/1", "https://api.example.com",
		"https://user@api.example.com/images/1", "https://api.example.com?x=/images", "https:///images/../predictors"} {
		hs := [][2]string{{"X-Original-Method", "GET"}, {"X-Original-Url", u}, {"X-Api-Key", demo.Key(t, "acme")}}
		if r := serveOne(t, h, "GET", "/", hs); r.status != 400 {
			t.Errorf("X-Original-URL %q: %d, want 400", u, r.status)
		}
	}
	// Envoy mode: "OPTIONS *" and an absolute-form target are not paths.
	h, demo = handler(t, extauthz.HTTPOptions{Mode: extauthz.ModeEnvoy})
	for _, target := range []string{"*", "http://api.example.com/images"} {
		req := httptest.NewRequest("OPTIONS", "/", nil)
		req.RequestURI, req.RemoteAddr = target, "127.0.0.1:1"
		req.Header.Set("X-Api-Key", demo.Key(t, "acme"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 400 {
			t.Errorf("envoy mode, target %q: %d, want 400", target, rec.Code)
		}
	}
}

// TestForwardAuthUntrustedPeer: forwarded headers from a peer outside the
// trusted proxies are not believed; the request is denied.
func TestForwardAuthUntrustedPeer(t *testing.T) {
	h, demo := handler(t, extauthz.HTTPOptions{Mode: extauthz.ModeTraefik, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	for k, v := range map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/images", "X-Api-Key": demo.Key(t, "acme")} {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "untrusted_proxy") {
		t.Fatalf("%d %s", resp.StatusCode, b)
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
