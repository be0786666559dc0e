package policy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// exampleCase is one request against an example policy and what must come
// back. Header values of the form "key:<id>" and "token:<name>" are replaced
// by the demo key or a freshly minted demo token.
type exampleCase struct {
	name    string
	method  string
	path    string
	headers map[string]string

	allow  bool
	status int
	reason reason.Code
	tier   string
	tenant string
	kind   string
	user   string
	cred   string
}

func engineFor(t testing.TB, example string) (*policy.Engine, *testkit.Demo) {
	t.Helper()
	demo := testkit.Load(t, example)
	s, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		t.Fatalf("loading %s: %v", example, err)
	}
	return policy.NewEngine(s, policy.EngineOptions{}), demo
}

func runExample(t *testing.T, example string, cases []exampleCase) {
	eng, demo := engineFor(t, example)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range tc.headers {
				h[k] = demo.Expand(t, v)
			}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			if tc.reason == "" {
				t.Fatal("the case names no reason: say which one the decision must give")
			}
			d := eng.Decide(context.Background(), policy.Request{Method: method, Path: tc.path, Headers: h})
			if d.Allow != tc.allow || d.Status() != tc.status || d.Reason != tc.reason {
				t.Fatalf("got allow=%v status=%d reason=%s, want allow=%v status=%d reason=%s",
					d.Allow, d.Status(), d.Reason, tc.allow, tc.status, tc.reason)
			}
			assertNoSecret(t, d, h)
			if tc.tier != "" && d.Tier != tc.tier {
				t.Errorf("tier = %q, want %q", d.Tier, tc.tier)
			}
			if d.Allow {
				if d.Tenant != tc.tenant || d.TenantKind != tc.kind {
					t.Errorf("tenant = %q (%s), want %q (%s)", d.Tenant, d.TenantKind, tc.tenant, tc.kind)
				}
				if tc.user != "" && d.User != tc.user {
					t.Errorf("user = %q, want %q", d.User, tc.user)
				}
				if tc.cred != "" && d.Credential != tc.cred {
					t.Errorf("credential = %q, want %q", d.Credential, tc.cred)
				}
				checkHeaders(t, eng.Snapshot(), d)
			} else if len(d.SetHeaders) != 0 || len(d.RemoveHeaders) != 0 {
				t.Errorf("a deny carries headers: set %v remove %v", d.SetHeaders, d.RemoveHeaders)
			}
		})
	}
}

// checkHeaders asserts the header contract of an allow: every upstream
// header set to the decision's value or removed, every context and
// credential header removed, no name in both lists.
func checkHeaders(t *testing.T, s *policy.Snapshot, d policy.Decision) {
	t.Helper()
	set := map[string]string{}
	for _, h := range d.SetHeaders {
		set[h.Name] = h.Value
	}
	want := map[string]string{
		"x-tenant-id": d.Tenant, "x-tenant-kind": d.TenantKind, "x-user-id": d.User,
		"x-auth-tier": d.Tier, "x-credential-id": d.Credential,
	}
	for name, v := range want {
		switch {
		case v != "" && set[name] != v:
			t.Errorf("%s = %q, want %q", name, set[name], v)
		case v == "" && !slices.Contains(d.RemoveHeaders, name):
			t.Errorf("%s has no value but is not removed", name)
		}
	}
	for _, h := range append(s.ContextHeaders(), s.CredentialHeaders()...) {
		if !slices.Contains(d.RemoveHeaders, h) {
			t.Errorf("%s not in remove list %v", h, d.RemoveHeaders)
		}
	}
	for _, h := range d.RemoveHeaders {
		if _, both := set[h]; both {
			t.Errorf("%s is both set and removed", h)
		}
	}
}

func TestThreeTiers(t *testing.T) {
	key := func(id string) map[string]string {
		return map[string]string{"x-api-key": "key:" + id, "authorization": "None"}
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	runExample(t, "three-tiers", []exampleCase{
		{name: "key only GET is service", path: "/images/1", headers: key("acme"),
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization", cred: "acme"},
		{name: "key only HEAD is service", method: "HEAD", path: "/images", headers: key("acme"),
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization"},
		{name: "query string ignored for routing", path: "/images?x=/predictors", headers: key("acme"),
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization"},
		{name: "key only POST is denied", method: "POST", path: "/images", headers: key("acme"),
			status: 403, reason: reason.TierTooLow, tier: "service"},
		{name: "no authorization header at all is service", path: "/images", headers: map[string]string{"x-api-key": "key:acme"},
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization"},
		{name: "access token makes admin", method: "POST", path: "/images",
			headers: with(key("acme"), "authorization", "Bearer token:alice-access"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "acme", kind: "organization", user: "alice@acme.com", cred: "acme"},
		{name: "bearer scheme is case-insensitive", method: "POST", path: "/collections/9",
			headers: with(key("acme"), "authorization", "bearer token:alice-access"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "acme", kind: "organization"},
		{name: "raw id token makes admin", method: "DELETE", path: "/collections",
			headers: with(key("acme"), "authorization", "token:alice-id"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "acme", kind: "organization", user: "alice@acme.com"},
		{name: "token without openid scope stays service", method: "POST", path: "/images",
			headers: with(key("acme"), "authorization", "Bearer token:alice-noscope"),
			status:  403, reason: reason.TierTooLow, tier: "service"},
		{name: "token without openid scope still reads", path: "/images",
			headers: with(key("acme"), "authorization", "Bearer token:alice-noscope"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization"},
		{name: "another tenant's token is denied", path: "/images",
			headers: with(key("globex"), "authorization", "Bearer token:alice-access"),
			status:  403, reason: reason.TenantMismatch},
		{name: "another tenant's id token is denied", path: "/images",
			headers: with(key("globex"), "authorization", "token:alice-id"),
			status:  403, reason: reason.TenantMismatch},
		{name: "bob with his own key is admin of globex", method: "POST", path: "/images",
			headers: with(key("globex"), "authorization", "Bearer token:bob-access"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "globex", kind: "organization", user: "bob@globex.com"},
		{name: "no key is 401", path: "/images", headers: map[string]string{"authorization": "None"},
			status: 401, reason: reason.MissingCredential},
		{name: "token without key grants nothing", path: "/images", headers: map[string]string{"authorization": "Bearer token:alice-access"},
			status: 403, reason: reason.TierTooLow},
		{name: "unknown key is 401", path: "/images", headers: map[string]string{"x-api-key": "0123456789012345678901234567890123456789"},
			status: 401, reason: reason.InvalidAPIKey},
		{name: "repeated key header joined by envoy is invalid", path: "/images", headers: map[string]string{"x-api-key": "key:acme,key:acme"},
			status: 401, reason: reason.InvalidAPIKey},
		{name: "empty bearer is 401", path: "/images", headers: with(key("acme"), "authorization", "Bearer "),
			status: 401, reason: reason.InvalidToken},
		{name: "garbage token on a key-only route is 401", path: "/images", headers: with(key("acme"), "authorization", "Bearer not-a-token"),
			status: 401, reason: reason.InvalidToken},
		{name: "superuser on predictors", path: "/predictors",
			headers: with(key("root"), "authorization", "Bearer token:root-access"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "superuser", user: "root@portcullis.example", cred: "root"},
		{name: "superuser selects a customer", path: "/predictors/p1",
			headers: with(key("root"), "authorization", "Bearer token:root-access", "x-selected-customer", "acme"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "superuser", tenant: "acme", kind: "organization"},
		{name: "superuser selects a customer by alias", method: "POST", path: "/images",
			headers: with(key("root"), "authorization", "Bearer token:root-access", "x-selected-customer", "org_2f9c"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "superuser", tenant: "acme", kind: "organization"},
		{name: "superuser needs a tenant on tenant routes", path: "/images",
			headers: with(key("root"), "authorization", "Bearer token:root-access"),
			status:  403, reason: reason.TenantRequired},
		{name: "superuser naming an unknown customer", path: "/predictors",
			headers: with(key("root"), "authorization", "Bearer token:root-access", "x-selected-customer", "initech"),
			status:  403, reason: reason.TenantNotAllowed},
		{name: "customer key may not select a customer", path: "/images",
			headers: with(key("acme"), "x-selected-customer", "acme"),
			status:  403, reason: reason.ContextNotAllowed},
		{name: "admin may not select a customer", method: "POST", path: "/images",
			headers: with(key("acme"), "authorization", "Bearer token:alice-access", "x-selected-customer", "globex"),
			status:  403, reason: reason.ContextNotAllowed},
		{name: "superuser key alone grants nothing", path: "/predictors", headers: key("root"),
			status: 403, reason: reason.TierTooLow},
		{name: "customer token is not a staff token", path: "/predictors",
			headers: with(key("root"), "authorization", "Bearer token:alice-access"),
			status:  403, reason: reason.TierTooLow},
		{name: "admin is below superuser routes", path: "/users",
			headers: with(key("acme"), "authorization", "Bearer token:alice-access"),
			status:  403, reason: reason.TierTooLow, tier: "admin"},
		{name: "spoofed tenant header is overwritten", path: "/images",
			headers: with(key("acme"), "x-tenant-id", "globex", "x-auth-tier", "superuser"),
			allow:   true, status: 200, reason: reason.Allowed, tier: "service", tenant: "acme", kind: "organization"},
		{name: "no route", path: "/admin", headers: key("acme"), status: 403, reason: reason.NoRoute},
		{name: "prefix is segment-aware", path: "/imagesx", headers: key("acme"), status: 403, reason: reason.NoRoute},
		{name: "dot-segment path", path: "/images/../predictors", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "encoded dot path", path: "/images/%2E%2e/predictors", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "encoded slash path", path: "/images%2fx", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "double slash path", path: "//predictors", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "backslash path", path: "/images\\..\\predictors", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "semicolon path", path: "/images;x=1", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "NUL path", path: "/images\x00", headers: key("acme"), status: 400, reason: reason.BadPath},
		{name: "case variant does not match", path: "/IMAGES", headers: key("acme"), status: 403, reason: reason.NoRoute},
	})
}

func TestThreeTiersTokenTime(t *testing.T) {
	eng, demo := engineFor(t, "three-tiers")
	now := time.Now()
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		at     time.Time
		reason reason.Code
	}{
		{"expired", nil, now.Add(-2 * time.Hour), reason.TokenExpired},
		{"not yet valid", map[string]any{"nbf": now.Add(time.Hour).Unix()}, now, reason.TokenNotYetValid},
		{"issued in the future", map[string]any{"iat": now.Add(time.Hour).Unix(), "nbf": nil}, now, reason.TokenNotYetValid},
		{"no exp", map[string]any{"exp": nil}, now, reason.InvalidToken},
		{"wrong audience", map[string]any{"client_id": "someone-else"}, now, reason.TokenAudience},
		{"wrong issuer", map[string]any{"iss": "https://evil.example"}, now, reason.TokenUnknownIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := demo.Token(t, "alice-access", tc.at, time.Hour, tc.extra)
			d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{
				"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + tok}})
			if d.Allow || d.Status() != 401 || d.Reason != tc.reason {
				t.Fatalf("got %v %d %s, want 401 %s", d.Allow, d.Status(), d.Reason, tc.reason)
			}
		})
	}
}

func TestIBContext(t *testing.T) {
	testPersonalContexts(t, "ib-context", "ib-context", []string{"org-acme"})
}

func TestRequesterUID(t *testing.T) {
	testPersonalContexts(t, "requester-uid", "instill-requester-uid", []string{"org-acme", "org-globex"})
}

// testPersonalContexts covers the two conventions where a user's key acts
// personally or, through a context header, for an organization of theirs.
func testPersonalContexts(t *testing.T, example, header string, aliceOrgs []string) {
	alice := map[string]string{"authorization": "Bearer key:alice"}
	bob := map[string]string{"authorization": "Bearer key:bob"}
	ctx := func(m map[string]string, v string) map[string]string {
		return map[string]string{"authorization": m["authorization"], header: v}
	}
	cases := []exampleCase{
		{name: "no header is personal", path: "/v1/models", headers: alice,
			allow: true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "u-alice", kind: "personal", user: "u-alice", cred: "alice"},
		{name: "own user id is personal", path: "/v1/models", headers: ctx(alice, "u-alice"),
			allow: true, status: 200, reason: reason.Allowed, tenant: "u-alice", kind: "personal"},
		{name: "bob with an org he is not in", path: "/v1/models", headers: ctx(bob, "org-acme"),
			status: 403, reason: reason.TenantNotAllowed},
		{name: "alice acting as bob", path: "/v1/models", headers: ctx(alice, "u-bob"),
			status: 403, reason: reason.TenantNotAllowed},
		{name: "alice with an unknown org", path: "/v1/models", headers: ctx(alice, "org-initech"),
			status: 403, reason: reason.TenantNotAllowed},
		{name: "bob reads personally", path: "/v1/models", headers: bob,
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "u-bob", kind: "personal"},
		{name: "bob may not write", method: "POST", path: "/v1/models", headers: bob,
			status: 403, reason: reason.TierTooLow, tier: "service"},
		{name: "alice may write", method: "POST", path: "/v1/models", headers: alice,
			allow: true, status: 200, reason: reason.Allowed, tier: "admin", tenant: "u-alice", kind: "personal"},
		{name: "scheme is case-insensitive", path: "/v1/x", headers: map[string]string{"authorization": "BEARER key:alice"},
			allow: true, status: 200, reason: reason.Allowed, tenant: "u-alice", kind: "personal"},
		{name: "no credentials", path: "/v1/models", status: 401, reason: reason.MissingCredential},
		{name: "unknown key", path: "/v1/models", headers: map[string]string{"authorization": "Bearer nope"},
			status: 401, reason: reason.InvalidAPIKey},
		{name: "key without bearer scheme", path: "/v1/models", headers: map[string]string{"authorization": "key:alice"},
			status: 401, reason: reason.InvalidAPIKey},
	}
	for _, org := range aliceOrgs {
		cases = append(cases,
			exampleCase{name: "alice acts for " + org, path: "/v1/models", headers: ctx(alice, org),
				allow: true, status: 200, reason: reason.Allowed, tier: "admin", tenant: org, kind: "organization", user: "u-alice"},
			exampleCase{name: "alice writes for " + org, method: "PUT", path: "/v1/models/1", headers: ctx(alice, org),
				allow: true, status: 200, reason: reason.Allowed, tier: "admin", tenant: org, kind: "organization"})
	}
	runExample(t, example, cases)
}

func TestBearerKey(t *testing.T) {
	runExample(t, "bearer-key", []exampleCase{
		{name: "bearer key", path: "/api/v2/chat", headers: map[string]string{"authorization": "Bearer key:app"},
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "app", kind: "organization", cred: "app"},
		{name: "scheme case-insensitive", method: "POST", path: "/api/v2/chat", headers: map[string]string{"authorization": "bEaReR key:app"},
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "app", kind: "organization"},
		{name: "revoked key", path: "/api/v2/chat", headers: map[string]string{"authorization": "Bearer key:revoked"},
			status: 401, reason: reason.KeyDisabled},
		{name: "outside /api/", path: "/healthz", headers: map[string]string{"authorization": "Bearer key:app"},
			status: 403, reason: reason.NoRoute},
		{name: "basic scheme", path: "/api/x", headers: map[string]string{"authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
			status: 401, reason: reason.InvalidAPIKey},
	})
}

func TestWorkspaceToken(t *testing.T) {
	runExample(t, "workspace-token", []exampleCase{
		{name: "workspace token", path: "/v1/models", headers: map[string]string{"rime-api-key": "key:ws1-alice"},
			allow: true, status: 200, reason: reason.Allowed, tier: "service", tenant: "workspace-1", kind: "organization", user: "alice", cred: "ws1-alice"},
		{name: "expired by the default lifetime", path: "/v1/models", headers: map[string]string{"rime-api-key": "key:expired"},
			status: 401, reason: reason.KeyExpired},
		{name: "bearer is not read", path: "/v1/models", headers: map[string]string{"authorization": "Bearer key:ws1-alice"},
			status: 401, reason: reason.MissingCredential},
	})
}
