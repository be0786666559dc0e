// Package testkit loads an example's demo credentials and mints real keys and
// tokens from them. It is the one place tests get secrets from; besides
// tests, only examples/demo-token (the README walk-through) imports it.
package testkit

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Demo is one example's demo-credentials.json.
type Demo struct {
	Dir     string
	Keys    map[string]string `json:"keys"`
	Issuers map[string]struct {
		Kid           string `json:"kid"`
		Alg           string `json:"alg"`
		PrivateKeyPEM string `json:"private_key_pem"`
	} `json:"issuers"`
	Tokens map[string]struct {
		Issuer string         `json:"issuer"`
		Claims map[string]any `json:"claims"`
	} `json:"tokens"`
	// ManagementTokens are the plaintexts of the example's management tokens
	// for the key-management API, by id.
	ManagementTokens map[string]string `json:"management_tokens"`
}

// Root returns the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Example returns the folder of examples/<name>.
func Example(name string) string { return filepath.Join(Root(), "examples", name) }

// Load reads examples/<name>/demo-credentials.json.
func Load(t testing.TB, name string) *Demo {
	t.Helper()
	d, err := LoadDir(Example(name))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// LoadDir reads dir/demo-credentials.json.
func LoadDir(dir string) (*Demo, error) {
	d := &Demo{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "demo-credentials.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("demo credentials in %s: %w", dir, err)
	}
	return d, nil
}

// Policy returns the path of the example's policy.yaml.
func (d *Demo) Policy() string { return filepath.Join(d.Dir, "policy.yaml") }

// Key returns the plaintext of demo key id.
func (d *Demo) Key(t testing.TB, id string) string {
	t.Helper()
	k, ok := d.Keys[id]
	if !ok {
		t.Fatalf("no demo key %q", id)
	}
	return k
}

// Signer returns the private key and kid of demo issuer id.
func (d *Demo) Signer(t testing.TB, id string) (crypto.Signer, string) {
	t.Helper()
	k, kid, err := d.signer(id)
	if err != nil {
		t.Fatal(err)
	}
	return k, kid
}

func (d *Demo) signer(id string) (crypto.Signer, string, error) {
	is, ok := d.Issuers[id]
	if !ok {
		return nil, "", fmt.Errorf("no demo issuer %q", id)
	}
	blk, _ := pem.Decode([]byte(is.PrivateKeyPEM))
	if blk == nil {
		return nil, "", fmt.Errorf("issuer %s: no PEM block", id)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, "", err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, "", fmt.Errorf("issuer %s: key cannot sign", id)
	}
	return s, is.Kid, nil
}

// Token mints the named demo token, valid from now-1m for lifetime, with
// claims overridden by extra (a nil value deletes a claim).
func (d *Demo) Token(t testing.TB, name string, now time.Time, lifetime time.Duration, extra map[string]any) string {
	t.Helper()
	tok, err := d.Mint(name, now, lifetime, extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Mint is Token for callers without a testing.TB.
func (d *Demo) Mint(name string, now time.Time, lifetime time.Duration, extra map[string]any) (string, error) {
	tk, ok := d.Tokens[name]
	if !ok {
		return "", fmt.Errorf("no demo token %q", name)
	}
	claims := maps.Clone(tk.Claims)
	claims["iat"] = now.Add(-time.Minute).Unix()
	claims["nbf"] = now.Add(-time.Minute).Unix()
	claims["exp"] = now.Add(lifetime).Unix()
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	key, kid, err := d.signer(tk.Issuer)
	if err != nil {
		return "", err
	}
	return sign(key, "RS256", map[string]any{"kid": kid}, claims)
}

// Sign makes a compact JWS of claims with key and alg, with the given extra
// protected header fields (a field whose value is nil is omitted).
func Sign(t testing.TB, key any, alg string, header map[string]any, claims map[string]any) string {
	t.Helper()
	tok, err := sign(key, alg, header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func sign(key any, alg string, header map[string]any, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	for k, v := range header {
		if v == nil {
			continue
		}
		if err := h.Set(k, v); err != nil {
			return "", err
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(alg), key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return string(out), nil
}

// JWKS returns a JWK set document holding the public keys with their kids.
func JWKS(t testing.TB, keys map[string]crypto.PublicKey) []byte {
	t.Helper()
	set := jwk.NewSet()
	for kid, pub := range keys {
		k, err := jwk.FromRaw(pub)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = set.AddKey(k)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RSAKey generates an RSA key of bits.
func RSAKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Header formats a -H style header line.
func Header(name, value string) string { return fmt.Sprintf("%s: %s", name, value) }

// Realworld returns testdata/realworld/<sub>: third-party data (real
// CheckRequests, IdP key sets, published tokens) kept in the repository
// with its sources and licences (testdata/realworld/SOURCES.md), so every
// test runs on a fresh clone anywhere.
func Realworld(t testing.TB, sub string) string {
	t.Helper()
	dir := filepath.Join(Root(), "testdata", "realworld", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("realworld data missing: %v", err)
	}
	return dir
}

// Expand turns placeholders in a header value into real demo credentials:
// "key:<id>" becomes the demo key, "token:<name>" a freshly minted demo
// token (valid for an hour), each optionally after a scheme ("Bearer
// key:app"); a comma-joined list (as Envoy joins repeated headers) is
// expanded item by item. Anything else is returned as is.
func (d *Demo) Expand(t testing.TB, v string) string {
	t.Helper()
	if strings.Contains(v, ",") {
		parts := strings.Split(v, ",")
		for i, p := range parts {
			parts[i] = d.Expand(t, p)
		}
		return strings.Join(parts, ",")
	}
	prefix := ""
	if p, rest, ok := strings.Cut(v, " "); ok {
		prefix, v = p+" ", rest
	}
	switch {
	case strings.HasPrefix(v, "key:"):
		v = d.Key(t, strings.TrimPrefix(v, "key:"))
	case strings.HasPrefix(v, "token:"):
		v = d.Token(t, strings.TrimPrefix(v, "token:"), time.Now(), time.Hour, nil)
	}
	return prefix + v
}
