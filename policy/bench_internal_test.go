package policy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// go test -run '^$' -bench . -benchmem ./policy/

// BenchmarkKeyLookup: hashing a presented key and finding its entry.
func BenchmarkKeyLookup(b *testing.B) {
	s, err := Load("../examples/three-tiers/policy.yaml", LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var demo struct{ Keys map[string]string }
	raw, err := os.ReadFile("../examples/three-tiers/demo-credentials.json")
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(raw, &demo); err != nil {
		b.Fatal(err)
	}
	key, now := demo.Keys["acme"], time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if k, r := s.lookupKey(key, now); k == nil || r != "" {
			b.Fatal(r)
		}
	}
}

// BenchmarkExtract: reading the key and the token from the headers.
func BenchmarkExtract(b *testing.B) {
	s := &Snapshot{apiKeyHeaders: []string{"x-api-key"}, jwtHeaders: []string{"authorization"}, noneValues: []string{"None"}}
	h := map[string]string{"x-api-key": "0123456789012345678901234567890123456789",
		"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "user-agent": "bench"}
	b.ReportAllocs()
	for b.Loop() {
		if c, r := s.extract(h); r != "" || c.token == "" {
			b.Fatal(r)
		}
	}
}

func benchVerify(b *testing.B, alg jwa.SignatureAlgorithm, key any, pub any) {
	tok, err := jws.Sign([]byte(`{"iss":"x","sub":"1","exp":9999999999}`), jws.WithKey(alg, key))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify(tok, jws.WithKey(alg, pub)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRS256Verify: one RS256 (2048-bit) signature verification, the
// reference cost of a token's first sight.
func BenchmarkRS256Verify(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	benchVerify(b, jwa.RS256, k, k.Public())
}
