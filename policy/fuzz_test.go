package policy_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// Longer runs: go test -run '^$' -fuzz '^FuzzDecide$' -fuzztime 10m ./policy/ (likewise
// FuzzToken, FuzzLoad). `make fuzz` runs every target for FUZZTIME each.

// assertDecisionShape holds for every decision: allow iff 200, a deny
// carries no headers, an allow sets or removes every upstream header and
// never both.
func assertDecisionShape(t *testing.T, d policy.Decision) {
	t.Helper()
	if d.Allow != (d.Status() == 200) {
		t.Fatalf("allow=%v with status %d", d.Allow, d.Status())
	}
	if !d.Allow {
		if len(d.SetHeaders)+len(d.RemoveHeaders) > 0 {
			t.Fatalf("deny with headers: %+v", d)
		}
		return
	}
	for _, name := range []string{"x-tenant-id", "x-tenant-kind", "x-user-id", "x-auth-tier", "x-credential-id"} {
		set := slices.ContainsFunc(d.SetHeaders, func(h policy.Header) bool { return h.Name == name })
		if set == slices.Contains(d.RemoveHeaders, name) {
			t.Fatalf("%s set=%v removed=%v", name, set, !set)
		}
	}
}

// FuzzDecide: whatever a client sends, Decide never panics, keeps the
// decision shape, and allows only with a real demo key; a client-sent
// tenant never becomes the upstream tenant unless the key grants it.
func FuzzDecide(f *testing.F) {
	eng, demo := engineFor(f, "three-tiers")
	keys := map[string]string{}
	for id, k := range demo.Keys {
		keys[k] = id
	}
	acme := demo.Keys["acme"]
	alice := demo.Token(f, "alice-access", time.Now(), time.Hour, nil)
	for _, c := range [][6]string{
		{"GET", "/images", acme, "None", "", ""},
		{"POST", "/images", acme, "Bearer " + alice, "", "globex"},
		{"GET", "/predictors", demo.Keys["root"], "Bearer " + alice, "acme", ""},
		{"GET", "/images/../predictors", acme, "", "", ""},
		{"get", "/images", acme + "," + acme, "bearer", "x", "acme"},
		{"GET", "/images?x", "", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "", ""},
	} {
		f.Add(c[0], c[1], c[2], c[3], c[4], c[5])
	}
	f.Fuzz(func(t *testing.T, method, path, key, authz, selected, tenant string) {
		d := eng.Decide(context.Background(), policy.Request{Method: method, Path: path, Headers: map[string]string{
			"x-api-key": key, "authorization": authz, "x-selected-customer": selected, "x-tenant-id": tenant}})
		assertDecisionShape(t, d)
		if !d.Allow {
			return
		}
		id, ok := keys[strings.TrimSpace(key)]
		if !ok {
			t.Fatalf("allowed without a valid key: %q", key)
		}
		if d.Credential != id {
			t.Fatalf("credential %q for key %q", d.Credential, id)
		}
		if tenant != "" && d.Tenant == tenant && d.Tenant != "acme" && d.Tenant != "globex" {
			t.Fatalf("client tenant %q reached the upstream", tenant)
		}
	})
}

// FuzzToken: any token (valid ones mutated, attacks, garbage) never panics
// verification, and is accepted only if its claims are a minted token's.
func FuzzToken(f *testing.F) {
	rsaKey := testkit.RSAKey(f, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := f.TempDir()
	jwks := filepath.Join(dir, "idp.json")
	if err := os.WriteFile(jwks, testkit.JWKS(f, map[string]crypto.PublicKey{"rsa": rsaKey.Public(), "ec": ecKey.Public()}), 0o644); err != nil {
		f.Fatal(err)
	}
	env := newTokenEnv(f, "{ file: "+jwks+" }", true)
	c := claims("https://idp.example", nil)
	valid := []string{
		testkit.Sign(f, rsaKey, "RS256", map[string]any{"kid": "rsa"}, c),
		testkit.Sign(f, ecKey, "ES256", map[string]any{"kid": "ec"}, c),
	}
	payloads := map[string]bool{}
	for _, v := range valid {
		f.Add(v)
		payloads[strings.Split(v, ".")[1]] = true
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("A", 9000)} {
		f.Add(s)
	}
	if dir, err := filepath.Glob(filepath.Join(testkit.Realworld(f, "tokens"), "*.json")); err == nil {
		for _, p := range dir {
			b, _ := os.ReadFile(p)
			if i := strings.Index(string(b), `"token": "`); i >= 0 {
				rest := string(b[i+10:])
				f.Add(rest[:strings.IndexByte(rest, '"')])
			}
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		d := env.decide(tok)
		assertDecisionShape(t, d)
		if !d.Allow {
			return
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d segments", len(parts))
		}
		got, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatalf("accepted an undecodable payload")
		}
		for p := range payloads {
			want, _ := base64.RawURLEncoding.DecodeString(p)
			if string(want) == string(got) {
				return
			}
		}
		t.Fatalf("accepted claims nobody signed: %s", got)
	})
}

// FuzzLoad: loading any policy and keys file never panics, and a policy that
// loads decides without panicking.
func FuzzLoad(f *testing.F) {
	for _, ex := range []string{"three-tiers", "ib-context", "workspace-token"} {
		p, _ := os.ReadFile(filepath.Join(testkit.Example(ex), "policy.yaml"))
		k, _ := os.ReadFile(filepath.Join(testkit.Example(ex), "keys.yaml"))
		f.Add(string(p), string(k))
	}
	f.Add("version: 1\ntiers: {a: {requires_any: [{}]}}", "keys: [{}]")
	f.Add(`{"version": 1, "routes": [{"prefix": "/"}]}`, "")
	f.Add("version: 1\nkeys_file: keys.yaml\nkey_lifetime: 99999999999d\n", "keys: !!binary x")
	f.Fuzz(func(t *testing.T, pol, keys string) {
		dir := t.TempDir()
		jw, _ := os.ReadFile(filepath.Join(testkit.Example("three-tiers"), "customers-jwks.json"))
		for name, body := range map[string]string{"policy.yaml": pol, "keys.yaml": keys, "customers-jwks.json": string(jw), "staff-jwks.json": string(jw)} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(pol, "uri:") {
			return // no network from a fuzz target
		}
		s, err := policy.Load(filepath.Join(dir, "policy.yaml"), policy.LoadOptions{})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		d := policy.NewEngine(s, policy.EngineOptions{}).Decide(context.Background(),
			policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{"x-api-key": "k", "authorization": "None"}})
		assertDecisionShape(t, d)
	})
}
