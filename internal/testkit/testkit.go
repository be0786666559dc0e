// Package testkit loads an example's demo credentials and mints real keys and
// tokens from them. It is the one place tests get secrets from; besides
// tests, only examples/demo-token (the README walk-through) imports it.
package testkit

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/portcullis/portcullis/internal/demo"
)

// Demo is one example's demo credentials (internal/demo), with helpers
// that fail the test instead of returning errors.
type Demo struct {
	*demo.Credentials
	Dir string
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
	c, err := demo.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	return &Demo{Credentials: c, Dir: dir}, nil
}

// Policy returns the path of the example's policy.yaml.
func (d *Demo) Policy() string { return filepath.Join(d.Dir, "policy.yaml") }

// Key returns the plaintext of demo key id.
func (d *Demo) Key(t testing.TB, id string) string {
	t.Helper()
	k, err := d.Credentials.Key(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Signer returns the private key and kid of demo issuer id.
func (d *Demo) Signer(t testing.TB, id string) (crypto.Signer, string) {
	t.Helper()
	k, _, kid, err := d.Credentials.Signer(id)
	if err != nil {
		t.Fatal(err)
	}
	return k, kid
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

// Sign makes a compact JWS of claims with key and alg, with the given extra
// protected header fields (a field whose value is nil is omitted).
func Sign(t testing.TB, key any, alg string, header map[string]any, claims map[string]any) string {
	t.Helper()
	tok, err := demo.Sign(key, alg, header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
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

// Expand turns the placeholders in a header value into real demo
// credentials (demo.Credentials.Expand).
func (d *Demo) Expand(t testing.TB, v string) string {
	t.Helper()
	out, err := d.Credentials.Expand(v, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return out
}
