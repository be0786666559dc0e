package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

const hostsPolicy = `version: 1
credentials:
  api_key: { headers: [x-api-key] }
keys:
  - { id: svc, sha256: SVC, tenant: t, tier: service, created: 2026-01-01 }
  - { id: adm, sha256: ADM, tenant: t, tier: admin, created: 2026-01-01 }
tenants: { t: {} }
tiers:
  service: { requires_any: [ { key: any } ] }
  admin: { requires_any: [ { key: any } ] }
routes:
  - { prefix: /v1, hosts: [Admin.Example.com], tier: admin }
  - { prefix: /v1, hosts: ["*.internal.example.com", api.example.com], tier: service }
  - { path: /healthz, public: true }
`

func hostsEngine(t *testing.T) *policy.Engine {
	t.Helper()
	y := strings.NewReplacer("SVC", sha("svc-key"), "ADM", sha("adm-key")).Replace(hostsPolicy)
	s, err := loadString(t, y, nil)
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewEngine(s, policy.EngineOptions{})
}

// TestPerHostRoutes: a route naming hosts applies to those hosts only
// (exact names and one leading wildcard label, case-insensitive, port and
// a trailing dot ignored); a route without hosts applies to every host.
func TestPerHostRoutes(t *testing.T) {
	eng := hostsEngine(t)
	for _, tc := range []struct {
		host, key string
		reason    reason.Code
	}{
		{"admin.example.com", "adm-key", reason.Allowed},
		{"ADMIN.example.COM", "adm-key", reason.Allowed},
		{"admin.example.com:8443", "adm-key", reason.Allowed},
		{"admin.example.com.", "adm-key", reason.Allowed},
		{"admin.example.com", "svc-key", reason.TierTooLow},
		{"api.example.com", "svc-key", reason.Allowed},
		{"a.internal.example.com", "svc-key", reason.Allowed},
		{"a.b.internal.example.com:80", "svc-key", reason.Allowed},
		{"internal.example.com", "svc-key", reason.NoRoute}, // the wildcard's own name is not below it
		{"xinternal.example.com", "svc-key", reason.NoRoute},
		{"api.example.com.evil.test", "svc-key", reason.NoRoute},
		{"example.com", "svc-key", reason.NoRoute},
		{"", "svc-key", reason.NoRoute}, // no host: only routes without hosts
		{"127.0.0.1:8080", "svc-key", reason.NoRoute},
		{"[::1]:8080", "svc-key", reason.NoRoute},
	} {
		d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/v1/x", Host: tc.host, Headers: map[string]string{"x-api-key": tc.key}})
		if d.Reason != tc.reason {
			t.Errorf("host %q with %s: %s, want %s", tc.host, tc.key, d.Reason, tc.reason)
		}
	}
	for _, host := range []string{"", "anything.test", "[::1]"} {
		if d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/healthz", Host: host}); !d.Allow {
			t.Errorf("a route without hosts, host %q: %s", host, d.Reason)
		}
	}
}

// TestMalformedHostsAreRefused: a host no DNS name or IP literal could be
// is 400 bad_request on every route, never matched loosely.
func TestMalformedHostsAreRefused(t *testing.T) {
	eng := hostsEngine(t)
	for _, host := range []string{
		"api.example.com:443:443", "api.example.com:", "api.example.com:x", "api.example.com:123456", "api.example.com: 443",
		"api example.com", " api.example.com", "api.example.com ", "api.example.com\t", "api.exa\x00mple.com",
		"api.ex\u00e4mple.com", "аpi.example.com" /* Cyrillic а */, "api.example.com%2e", "user@api.example.com",
		"api.example.com/", "api.example.com\\", "api..example.com", ".api.example.com", "..", ":443",
		"[::1", "[::1]x", "[::1]:", "[::g]", "[]", "api.example.com#", "api.example.com?x", "*.example.com",
		strings.Repeat("a", 64) + ".example.com", strings.Repeat("a.", 127) + "com",
	} {
		for _, path := range []string{"/v1/x", "/healthz"} {
			d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: path, Host: host, Headers: map[string]string{"x-api-key": "adm-key"}})
			if d.Allow || d.Status() != 400 || d.Reason != reason.BadRequest {
				t.Errorf("host %q %s: allow=%v %d %s, want 400 bad_request", host, path, d.Allow, d.Status(), d.Reason)
			}
		}
	}
}

// TestRouteHostsValidated: a route's host must be a name or one leading
// wildcard label, without port or scheme.
func TestRouteHostsValidated(t *testing.T) {
	for _, bad := range []string{`"*"`, `"a.*.com"`, `"*foo.com"`, `"api.example.com:443"`, `"https://api.example.com"`, `""`,
		`"*.[::1]"`, `"api example.com"`, `"**.example.com"`} {
		y := strings.Replace(strings.NewReplacer("SVC", sha("svc-key"), "ADM", sha("adm-key")).Replace(hostsPolicy),
			"hosts: [Admin.Example.com]", "hosts: ["+bad+"]", 1)
		_, err := loadString(t, y, nil)
		if err == nil || !strings.Contains(err.Error(), "routes[0].hosts[0]: want a host name like api.example.com or *.example.com") {
			t.Errorf("host %s: %v", bad, err)
		}
	}
}
