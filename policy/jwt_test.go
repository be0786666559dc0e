package policy_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

const tokenPolicyYAML = `version: 1
credentials:
  jwt: { headers: [authorization] }
issuers:
  idp:
    issuer: https://idp.example
    jwks: JWKS
    audiences: [portcullis-test]
    algorithms: [RS256, ES256, EdDSA]
    REQUIREKID
  other:
    issuer: https://other.example
    jwks: { file: other.json }
    audiences: [portcullis-test]
    algorithms: [RS256]
tiers:
  user: { requires_any: [ { jwt: idp }, { jwt: other } ] }
routes:
  - { prefix: /, tier: user, tenant: optional }
`

// tokenEnv is a policy trusting two issuers: "idp" (keys as the test
// chooses, often served over HTTP) and "other" (its own RSA key, in a file).
type tokenEnv struct {
	eng   *policy.Engine
	other crypto.Signer
}

func newTokenEnv(t testing.TB, jwks string, requireKID bool) *tokenEnv {
	t.Helper()
	dir := t.TempDir()
	other := testkit.RSAKey(t, 2048)
	write(t, filepath.Join(dir, "other.json"), testkit.JWKS(t, map[string]crypto.PublicKey{"o1": other.Public()}))
	y := strings.Replace(tokenPolicyYAML, "JWKS", jwks, 1)
	kid := ""
	if !requireKID {
		kid = "require_kid: false"
	}
	y = strings.Replace(y, "REQUIREKID", kid, 1)
	path := filepath.Join(dir, "policy.yaml")
	write(t, path, []byte(y))
	reg := cache.NewRegistry(cache.RemoteOptions{MinRefetch: time.Nanosecond, Timeout: 5 * time.Second}, false)
	t.Cleanup(reg.Close)
	s, err := policy.Load(path, policy.LoadOptions{JWKS: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &tokenEnv{eng: policy.NewEngine(s, policy.EngineOptions{}), other: other}
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *tokenEnv) decide(tok string) policy.Decision {
	return e.eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/x",
		Headers: map[string]string{"authorization": "Bearer " + tok}})
}

func claims(iss string, extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": iss, "sub": "user-1", "aud": "portcullis-test",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// uriJWKS is the policy's jwks value for an IdP.
func uriJWKS(idp *testkit.IdP) string { return "{ uri: " + idp.URL() + " }" }

func wantDeny(t *testing.T, d policy.Decision, status int, reason reason.Code) {
	t.Helper()
	if d.Allow || d.Status() != status || d.Reason != reason {
		t.Fatalf("got allow=%v %d %s, want %d %s", d.Allow, d.Status(), d.Reason, status, reason)
	}
}

func wantAllow(t *testing.T, d policy.Decision) {
	t.Helper()
	if !d.Allow {
		t.Fatalf("denied %d %s", d.Status(), d.Reason)
	}
}

// TestJWKSOverHTTPRotation: a new kid is picked up, a removed key stops
// verifying (even for a token already cached), and the last good set is
// served while the IdP is down.
func TestJWKSOverHTTPRotation(t *testing.T) {
	k1, k2 := testkit.RSAKey(t, 2048), testkit.RSAKey(t, 2048)
	idp := testkit.NewIdP(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k1": k1.Public()}))
	env := newTokenEnv(t, uriJWKS(idp), true)

	tok1 := testkit.Sign(t, k1, "RS256", map[string]any{"kid": "k1"}, claims("https://idp.example", nil))
	wantAllow(t, env.decide(tok1))
	wantAllow(t, env.decide(tok1)) // cached

	// Rotation: k2 appears, k1 goes.
	idp.Set(testkit.JWKS(t, map[string]crypto.PublicKey{"k2": k2.Public()}), false)
	tok2 := testkit.Sign(t, k2, "RS256", map[string]any{"kid": "k2"}, claims("https://idp.example", nil))
	wantAllow(t, env.decide(tok2))
	wantDeny(t, env.decide(tok1), 401, reason.TokenUnknownKey)

	// Outage: the set fetched last keeps verifying.
	idp.Set(nil, true)
	tok2b := testkit.Sign(t, k2, "RS256", map[string]any{"kid": "k2"}, claims("https://idp.example", map[string]any{"sub": "user-2"}))
	wantAllow(t, env.decide(tok2b))
	// An unknown kid during the outage is still just unknown.
	tok3 := testkit.Sign(t, k1, "RS256", map[string]any{"kid": "k3"}, claims("https://idp.example", nil))
	wantDeny(t, env.decide(tok3), 401, reason.TokenUnknownKey)
}

func TestJWKSNeverFetchedIs503(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	idp := testkit.NewIdP(t, nil)
	idp.Set(nil, true)
	env := newTokenEnv(t, uriJWKS(idp), true)
	tok := testkit.Sign(t, k, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", nil))
	wantDeny(t, env.decide(tok), 503, reason.JWKSUnavailable)

	// Once the IdP answers, the same token verifies: a 503 is not cached.
	idp.Set(testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}), false)
	wantAllow(t, env.decide(tok))
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestJWTRules covers the JWT rules of docs/design.md §4: algorithm allow-list
// (never none, never HMAC with the public key), kid required and looked up in
// the issuer's set only (jku/x5u/jwk ignored), bounded size, one issuer's
// keys never verifying another's tokens.
func TestJWTRules(t *testing.T) {
	good := testkit.RSAKey(t, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	short := testkit.RSAKey(t, 1024)
	attacker := testkit.RSAKey(t, 2048)
	dir := t.TempDir()
	jwksPath := filepath.Join(dir, "idp.json")
	write(t, jwksPath, testkit.JWKS(t, map[string]crypto.PublicKey{
		"rsa": good.Public(), "ec": ec.Public(), "ed": edPub, "short": short.Public()}))
	env := newTokenEnv(t, "{ file: "+jwksPath+" }", true)
	iss := "https://idp.example"
	c := claims(iss, nil)
	pubDER, _ := x509.MarshalPKIXPublicKey(good.Public())
	attackerJWK := json.RawMessage(testkit.JWKS(t, map[string]crypto.PublicKey{"rsa": attacker.Public()}))

	valid := testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, c)
	parts := strings.Split(valid, ".")

	cases := []struct {
		name   string
		tok    string
		status int
		reason reason.Code
	}{
		{"alg none", b64(map[string]any{"alg": "none", "kid": "rsa"}) + "." + parts[1] + ".", 401, reason.TokenSignature},
		{"alg none with a signature", b64(map[string]any{"alg": "none", "kid": "rsa"}) + "." + parts[1] + "." + parts[2], 401, reason.TokenAlgorithm},
		{"alg NoNe", b64(map[string]any{"alg": "NoNe", "kid": "rsa"}) + "." + parts[1] + "." + parts[2], 401, reason.TokenAlgorithm},
		{"HS256 signed with the public key", testkit.Sign(t, pubDER, "HS256", map[string]any{"kid": "rsa"}, c), 401, reason.TokenAlgorithm},
		{"RS384 not allowed for the issuer", testkit.Sign(t, good, "RS384", map[string]any{"kid": "rsa"}, c), 401, reason.TokenAlgorithm},
		{"no kid", testkit.Sign(t, good, "RS256", nil, c), 401, reason.TokenUnknownKey},
		{"unknown kid", testkit.Sign(t, good, "RS256", map[string]any{"kid": "nope"}, c), 401, reason.TokenUnknownKey},
		{"path-like kid", testkit.Sign(t, good, "RS256", map[string]any{"kid": "../../dev/null"}, c), 401, reason.TokenUnknownKey},
		{"sql-like kid", testkit.Sign(t, good, "RS256", map[string]any{"kid": "' OR 1=1 --"}, c), 401, reason.TokenUnknownKey},
		{"jku to an attacker key", testkit.Sign(t, attacker, "RS256", map[string]any{"kid": "rsa", "jku": "https://attacker.example/jwks.json"}, c), 401, reason.TokenSignature},
		{"x5u to an attacker key", testkit.Sign(t, attacker, "RS256", map[string]any{"kid": "rsa", "x5u": "https://attacker.example/cert.pem"}, c), 401, reason.TokenSignature},
		{"embedded attacker jwk", b64(map[string]any{"alg": "RS256", "kid": "rsa", "jwk": attackerJWK}) + "." + parts[1] + "." + parts[2], 401, reason.TokenSignature},
		{"unknown crit extension", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa", "crit": []string{"exp-ext"}, "exp-ext": 1}, c), 401, reason.InvalidToken},
		{"key under 2048 bits", testkit.Sign(t, short, "RS256", map[string]any{"kid": "short"}, c), 401, reason.TokenUnknownKey},
		{"signature stripped", parts[0] + "." + parts[1] + ".", 401, reason.TokenSignature},
		{"signature altered", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), 401, reason.TokenSignature},
		{"payload altered", parts[0] + "." + b64(claims(iss, map[string]any{"sub": "admin"})) + "." + parts[2], 401, reason.TokenSignature},
		{"two segments", parts[0] + "." + parts[1], 401, reason.InvalidToken},
		{"four segments", valid + ".x", 401, reason.InvalidToken},
		{"oversized", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"pad": strings.Repeat("x", 9000)})), 401, reason.TokenTooLarge},
		{"issuer A signed with issuer B's key", testkit.Sign(t, env.other, "RS256", map[string]any{"kid": "o1"}, c), 401, reason.TokenUnknownKey},
		{"issuer B's kid, A's claims, B's key", testkit.Sign(t, env.other, "RS256", map[string]any{"kid": "rsa"}, c), 401, reason.TokenSignature},
		{"wrong audience", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"aud": "someone-else"})), 401, reason.TokenAudience},
		{"client_id ignored when aud is present", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"aud": "x", "client_id": "portcullis-test"})), 401, reason.TokenAudience},
		{"missing exp", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"exp": nil})), 401, reason.InvalidToken},
		{"exp as a string", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"exp": "9999999999"})), 401, reason.InvalidToken},
		{"user claim with a newline", testkit.Sign(t, good, "RS256", map[string]any{"kid": "rsa"}, claims(iss, map[string]any{"sub": "eve\r\nx-tenant-id: acme"})), 401, reason.InvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := env.decide(tc.tok)
			wantDeny(t, d, tc.status, tc.reason)
			// Denied twice: the negative cache answers the same.
			wantDeny(t, env.decide(tc.tok), tc.status, tc.reason)
		})
	}

	t.Run("valid RS256, ES256 and EdDSA verify", func(t *testing.T) {
		wantAllow(t, env.decide(valid))
		wantAllow(t, env.decide(testkit.Sign(t, ec, "ES256", map[string]any{"kid": "ec"}, c)))
		wantAllow(t, env.decide(testkit.Sign(t, edPriv, "EdDSA", map[string]any{"kid": "ed"}, c)))
		wantAllow(t, env.decide(testkit.Sign(t, env.other, "RS256", map[string]any{"kid": "o1"}, claims("https://other.example", nil))))
	})
	t.Run("ES256 key cannot verify as RS256", func(t *testing.T) {
		tok := testkit.Sign(t, good, "RS256", map[string]any{"kid": "ec"}, c)
		wantDeny(t, env.decide(tok), 401, reason.TokenSignature)
	})
}

func TestKidOptional(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	dir := t.TempDir()
	jwksPath := filepath.Join(dir, "idp.json")
	write(t, jwksPath, testkit.JWKS(t, map[string]crypto.PublicKey{"": k.Public()}))
	env := newTokenEnv(t, "{ file: "+jwksPath+" }", false)
	wantAllow(t, env.decide(testkit.Sign(t, k, "RS256", nil, claims("https://idp.example", nil))))
	other := testkit.RSAKey(t, 2048)
	wantDeny(t, env.decide(testkit.Sign(t, other, "RS256", nil, claims("https://idp.example", nil))), 401, reason.TokenSignature)
}

// TestRealWorldTokens sends every published token, with a policy that
// trusts its issuer, audience and JWK set: each must be denied 401, cleanly.
func TestRealWorldTokens(t *testing.T) {
	dir := testkit.Realworld(t, "tokens")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatal("no tokens")
	}
	for _, f := range files {
		for _, requireKID := range []bool{true, false} {
			t.Run(filepath.Base(f)+map[bool]string{true: "", false: "/kid-optional"}[requireKID], func(t *testing.T) {
				var rec struct{ Token, JWKS string }
				b, _ := os.ReadFile(f)
				if err := json.Unmarshal(b, &rec); err != nil {
					t.Fatal(err)
				}
				env := realWorldEnv(t, rec.Token, filepath.Join(dir, rec.JWKS), requireKID)
				for _, h := range []string{"Bearer " + rec.Token, rec.Token} {
					d := env.Decide(context.Background(), policy.Request{Method: "GET", Path: "/x",
						Headers: map[string]string{"authorization": h}})
					if d.Allow || d.Status() != 401 {
						t.Fatalf("%.20s…: got allow=%v %d %s, want 401", h, d.Allow, d.Status(), d.Reason)
					}
				}
			})
		}
	}
}

// realWorldEnv builds a policy whose issuer matches the token's own iss and
// aud, trusting the token's JWK set (a stand-in key when the file is not a
// JWK set), so that only the token's real defect can deny it.
func realWorldEnv(t *testing.T, tok, jwksFile string, requireKID bool) *policy.Engine {
	t.Helper()
	iss, aud := "https://unknown.example", "unknown"
	if parts := strings.Split(tok, "."); len(parts) >= 2 {
		var c map[string]any
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil && json.Unmarshal(b, &c) == nil {
			if s, ok := c["iss"].(string); ok && s != "" {
				iss = s
			}
			switch a := c["aud"].(type) {
			case string:
				aud = a
			case []any:
				if len(a) > 0 {
					aud, _ = a[0].(string)
				}
			}
			if id, ok := c["client_id"].(string); ok && c["aud"] == nil {
				aud = id
			}
		}
	}
	dir := t.TempDir()
	jwks := "{ file: " + jwksFile + " }"
	if b, err := os.ReadFile(jwksFile); err != nil || func() bool { _, err := cache.ParseKeySet(b); return err != nil }() {
		write(t, filepath.Join(dir, "stand-in.json"), testkit.JWKS(t, map[string]crypto.PublicKey{"x": testkit.RSAKey(t, 2048).Public()}))
		jwks = "{ file: stand-in.json }"
	}
	y := `version: 1
credentials:
  jwt: { headers: [authorization] }
issuers:
  real:
    issuer: "` + iss + `"
    jwks: ` + jwks + `
    audiences: ["` + aud + `"]
    algorithms: [RS256, RS384, RS512, PS256, ES256, ES384, EdDSA]
    require_kid: ` + map[bool]string{true: "true", false: "false"}[requireKID] + `
tiers:
  user: { requires_any: [ { jwt: real } ] }
routes:
  - { prefix: /, tier: user, tenant: optional }
`
	path := filepath.Join(dir, "policy.yaml")
	write(t, path, []byte(y))
	s, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewEngine(s, policy.EngineOptions{})
}
