package policy_test

// Tests for the outside review's findings on the decision engine (see
// SECURITY.md): each enumerates the variants of a finding, not the one
// request that was reported.

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func decideWith(eng *policy.Engine, method, path string, h map[string]string) policy.Decision {
	return eng.Decide(context.Background(), policy.Request{Method: method, Path: path, Headers: h})
}

// caseVariants returns every upper/lower-case spelling of m.
func caseVariants(m string) []string {
	out := []string{""}
	for _, r := range m {
		var next []string
		for _, p := range out {
			next = append(next, p+strings.ToUpper(string(r)), p+strings.ToLower(string(r)))
		}
		out = next
	}
	return out
}

// TestMethodsAreUpperCaseTokens (RT-04): a method that is not an upper-case
// token never matches a route case-insensitively and never falls through to
// a laxer route: it is a 400, in every spelling of every method.
func TestMethodsAreUpperCaseTokens(t *testing.T) {
	s, err := loadString(t, `version: 1
credentials:
  api_key: { headers: [x-api-key] }
keys:
  - { id: svc, sha256: `+sha("svc-key")+`, tenant: t, tier: service, created: 2026-01-01 }
tenants: { t: {} }
tiers:
  service: { requires_any: [ { key: any } ] }
  admin: { requires_any: [ { key: any } ] }
routes:
  - { prefix: /api/, methods: [DELETE, PUT, PATCH, POST], tier: admin }
  - { prefix: /api/, tier: service }
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(s, policy.EngineOptions{})
	h := map[string]string{"x-api-key": "svc-key"}
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "DELETE", "PUT", "PATCH", "POST", "TRACE"} {
		for _, v := range caseVariants(m) {
			d := decideWith(eng, v, "/api/x", h)
			switch {
			case v != m:
				if d.Allow || d.Status() != 400 || d.Reason != reason.BadRequest {
					t.Errorf("method %q: allow=%v %d %s, want 400 bad_request", v, d.Allow, d.Status(), d.Reason)
				}
			case m == "DELETE" || m == "PUT" || m == "PATCH" || m == "POST":
				if d.Allow || d.Reason != reason.TierTooLow {
					t.Errorf("method %q: allow=%v %s, want tier_too_low", v, d.Allow, d.Reason)
				}
			default:
				if !d.Allow {
					t.Errorf("method %q: denied %s", v, d.Reason)
				}
			}
		}
	}
	for _, v := range []string{"", " GET", "GET ", "GE T", "G\tET", "GET\x00", "ＧＥＴ", "GET\r\n", "PO/ST", strings.Repeat("A", 33), "DEL3TE"} {
		if d := decideWith(eng, v, "/api/x", h); d.Allow || d.Status() != 400 {
			t.Errorf("method %q: allow=%v %d, want 400", v, d.Allow, d.Status())
		}
	}
	if _, err := loadString(t, strings.Replace(basePolicy, "{ prefix: /, tier: service }", "{ prefix: /, methods: [get], tier: service }", 1), nil); err == nil ||
		!strings.Contains(err.Error(), "routes[0].methods[0]") {
		t.Errorf("a lower-case route method loaded: %v", err)
	}
}

// personalPolicy loads a policy with personal contexts on, a tenant with an
// alias, the given keys, and a token issuer whose signer it returns.
func personalPolicy(t *testing.T, keysYAML string) (*policy.Snapshot, crypto.Signer, error) {
	t.Helper()
	k := testkit.RSAKey(t, 2048)
	s, err := loadString(t, `version: 1
credentials:
  api_key: { headers: [x-api-key] }
  jwt: { headers: [authorization] }
personal_tenants: true
issuers:
  idp:
    issuer: https://idp.example
    jwks: { file: jwks.json }
    audiences: [portcullis-test]
    algorithms: [RS256]
tenants:
  org-acme: { aliases: [acme-alias], members: [u-alice] }
keys:
`+keysYAML+`
tiers:
  user: { requires_any: [ { jwt: idp }, { key: any } ] }
context:
  - { header: ib-context }
routes:
  - { prefix: /, tier: user, tenant: optional }
`, map[string]string{"jwks.json": string(testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))})
	return s, k, err
}

// TestPersonalContextNeverNamesATenant (RT-05): a user whose id is a
// tenant's name or alias, or a tenant keys are bound to, never acts "as
// themself" under that name, with or without a context header; validate
// refuses keys and members named like a tenant.
func TestPersonalContextNeverNamesATenant(t *testing.T) {
	s, signer, err := personalPolicy(t, `  - { id: ws, sha256: `+sha("ws-key")+`, tenant: ws-1, tier: user, created: 2026-01-01 }`)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(s, policy.EngineOptions{})
	tok := func(sub string) string {
		return "Bearer " + testkit.Sign(t, signer, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", map[string]any{"sub": sub}))
	}
	for _, sub := range []string{"org-acme", "acme-alias", "ws-1"} {
		for _, ctx := range []string{"", sub, "org-acme", "acme-alias"} {
			h := map[string]string{"authorization": tok(sub)}
			if ctx != "" {
				h["ib-context"] = ctx
			}
			d := decideWith(eng, "GET", "/x", h)
			if d.Allow || d.Status() != 403 || d.Reason != reason.TenantNotAllowed {
				t.Errorf("sub %q, ib-context %q: allow=%v %d %s tenant=%q, want 403 tenant_not_allowed",
					sub, ctx, d.Allow, d.Status(), d.Reason, d.Tenant)
			}
		}
	}
	d := decideWith(eng, "GET", "/x", map[string]string{"authorization": tok("u-alice")})
	if !d.Allow || d.Tenant != "u-alice" || d.TenantKind != policy.KindPersonal {
		t.Errorf("an ordinary user's personal context: %+v", d)
	}
	d = decideWith(eng, "GET", "/x", map[string]string{"authorization": tok("u-alice"), "ib-context": "acme-alias"})
	if !d.Allow || d.Tenant != "org-acme" || d.TenantKind != policy.KindOrganization {
		t.Errorf("a member selecting the org by alias: %+v", d)
	}

	for name, keys := range map[string]string{
		"key user is a tenant":       `  - { id: k1, sha256: ` + sha("a") + `, user: org-acme, tier: user, created: 2026-01-01 }`,
		"key user is an alias":       `  - { id: k1, sha256: ` + sha("a") + `, user: acme-alias, tier: user, created: 2026-01-01 }`,
		"key user is a key's tenant": `  - { id: k1, sha256: ` + sha("a") + `, tenant: ws-1, tier: user, created: 2026-01-01 }` + "\n" + `  - { id: k2, sha256: ` + sha("b") + `, user: ws-1, tier: user, created: 2026-01-01 }`,
	} {
		if _, _, err := personalPolicy(t, keys); err == nil || !strings.Contains(err.Error(), ".user: ") {
			t.Errorf("%s: loaded (%v)", name, err)
		}
	}
	_, err = loadString(t, basePolicy+"tenants:\n  a: { members: [b] }\n  b: {}\n", nil)
	if err == nil || !strings.Contains(err.Error(), "tenants.a.members[0]") {
		t.Errorf("a member named like a tenant loaded: %v", err)
	}
}

// TestAudienceStringIsOneValue (RT-06): a string aud is compared whole, so
// no spelling with spaces or other audiences passes; arrays still match
// any member exactly.
func TestAudienceStringIsOneValue(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	dir := t.TempDir()
	path := filepath.Join(dir, "idp.json")
	write(t, path, testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))
	env := newTokenEnv(t, "{ file: "+path+" }", true)
	for _, tc := range []struct {
		aud any
		ok  bool
	}{
		{"portcullis-test", true}, {[]any{"x", "portcullis-test"}, true},
		{"other-api portcullis-test", false}, {"portcullis-test ", false}, {" portcullis-test", false},
		{"\tportcullis-test\n", false}, {"portcullis-test,other", false}, {"Portcullis-Test", false},
		{[]any{"portcullis-test other"}, false}, {[]any{}, false}, {7, false},
	} {
		tok := testkit.Sign(t, k, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", map[string]any{"aud": tc.aud}))
		d := env.decide(tok)
		if d.Allow != tc.ok || (!tc.ok && d.Reason != reason.TokenAudience) {
			t.Errorf("aud %q: allow=%v %s, want allow=%v", fmt.Sprint(tc.aud), d.Allow, d.Reason, tc.ok)
		}
	}
}

// TestPathsANormalizerCouldReadOtherwise (RT-08): the reported paths are a
// 400 through the whole engine, with valid credentials, on every example.
func TestPathsANormalizerCouldReadOtherwise(t *testing.T) {
	eng, demo := engineFor(t, "three-tiers")
	h := map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "None"}
	for _, p := range []string{
		"/images/%c0%ae%c0%ae/predictors", "/images/..%c0%af..%c0%afpredictors", "/images/%e0%80%ae%e0%80%ae/predictors",
		"/images/%u002e%u002e/predictors", "/images/%ef%bc%8e%ef%bc%8e%ef%bc%8fpredictors",
		"/images/%0a", "/images/%0d", "/images/%09", "/images/%7f", "/images/%1b", "/images/%69mages", "/images/x%3f/../predictors",
	} {
		if d := decideWith(eng, "GET", p, h); d.Allow || d.Status() != 400 || d.Reason != reason.BadPath {
			t.Errorf("%s: allow=%v %d %s, want 400 bad_path", p, d.Allow, d.Status(), d.Reason)
		}
	}
}

// TestKeyBoundToAliasIsCanonical (RT-11): a key written with a tenant's
// alias is bound to the tenant's canonical name: that is what the tenant
// header carries.
func TestKeyBoundToAliasIsCanonical(t *testing.T) {
	s, err := loadString(t, basePolicy+`tenants:
  acme: { aliases: [org_2f9c] }
keys:
  - { id: a, sha256: `+sha("alias-key")+`, tenant: org_2f9c, tier: service, created: 2026-01-01 }
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := decideWith(policy.NewEngine(s, policy.EngineOptions{}), "GET", "/x", map[string]string{"x-api-key": "alias-key"})
	if !d.Allow || d.Tenant != "acme" {
		t.Fatalf("tenant %q (allow %v), want acme", d.Tenant, d.Allow)
	}
	for _, h := range d.SetHeaders {
		if h.Name == policy.DefaultTenantHeader && h.Value != "acme" {
			t.Errorf("x-tenant-id: %s", h.Value)
		}
	}
	s.Keys().Each(func(k keys.APIKey) {
		if k.Tenant != "acme" {
			t.Errorf("key %s is bound to %q", k.ID, k.Tenant)
		}
	})
}

// TestContextHeaderSentEmpty (RT-12): a superuser-only context header sent
// by anyone else is 403 whatever its value, empty and blank included; a
// superuser's empty one selects nothing.
func TestContextHeaderSentEmpty(t *testing.T) {
	eng, demo := engineFor(t, "three-tiers")
	acme := map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "None"}
	admin := map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)}
	root := map[string]string{"x-api-key": demo.Key(t, "root"), "authorization": "Bearer " + demo.Token(t, "root-access", time.Now(), time.Hour, nil)}
	with := func(h map[string]string, v string) map[string]string {
		out := map[string]string{"x-selected-customer": v}
		for k, x := range h {
			out[k] = x
		}
		return out
	}
	for _, v := range []string{"", " ", "\t", "  \t ", "acme", "globex"} {
		for name, h := range map[string]map[string]string{"service": acme, "admin": admin} {
			if d := decideWith(eng, "GET", "/images", with(h, v)); d.Allow || d.Reason != reason.ContextNotAllowed {
				t.Errorf("%s with x-selected-customer %q: allow=%v %s, want context_not_allowed", name, v, d.Allow, d.Reason)
			}
		}
	}
	if d := decideWith(eng, "GET", "/predictors", with(root, " ")); !d.Allow || d.Tenant != "" {
		t.Errorf("superuser with a blank selection: %+v", d)
	}
}

// TestPanicsAreReported: a recovered panic is denied 503 and reported with
// the stack of the goroutine that panicked.
func TestPanicsAreReported(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	s, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var value any
	var stack []byte
	eng := policy.NewEngine(s, policy.EngineOptions{OnPanic: func(v any, st []byte) { value, stack = v, st }})
	policy.SetSource(eng.Snapshot(), "customers", panicSource{})
	tok := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	d := decideWith(eng, "GET", "/images", map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + tok})
	if d.Allow || d.Status() != 503 {
		t.Fatalf("panic gave %+v", d)
	}
	if value != "boom" || !strings.Contains(string(stack), "panicSource") {
		t.Fatalf("reported %v with stack:\n%s", value, stack)
	}
	if strings.Contains(string(stack), tok) || strings.Contains(policy.PanicValue(value), "boom") {
		t.Error("the report shows request data or an arbitrary panic value")
	}
	if got := policy.PanicValue(fmt.Errorf("x")); !strings.Contains(got, "*fmt.wrapError") && !strings.Contains(got, "*errors.errorString") {
		t.Errorf("PanicValue(error) = %q", got)
	}
}
