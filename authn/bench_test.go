package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/keys"
)

// go test -run '^$' -bench . -benchmem ./authn/

// BenchmarkKeyLookup: hashing a presented key and finding its entry.
func BenchmarkKeyLookup(b *testing.B) {
	const key = "0123456789012345678901234567890123456789"
	ib := keys.NewIndexBuilder(1)
	ib.Add(&keys.Entry{ID: "acme", Digest: keys.DigestOf(key), Tenant: "acme", Tier: "admin"}, "acme", 0)
	idx, now := ib.Build(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := CheckKey(idx, key, now); r != "" {
			b.Fatal(r)
		}
	}
}

// BenchmarkExtract: reading the key and the token from the headers.
func BenchmarkExtract(b *testing.B) {
	e := NewExtractor(ExtractorConfig{APIKeyHeaders: []string{"x-api-key"}, JWTHeaders: []string{"authorization"}, None: []string{"None"}})
	h := map[string]string{"x-api-key": "0123456789012345678901234567890123456789",
		"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "user-agent": "bench"}
	b.ReportAllocs()
	for b.Loop() {
		if c, r := e.Extract(h); r != "" || c.Token == "" {
			b.Fatal(r)
		}
	}
}

// benchSignature: one signature verification as Verify does it, the
// reference cost of a token's first sight.
func benchSignature(b *testing.B, alg jwa.SignatureAlgorithm, key, pub any) {
	tok, err := jws.Sign([]byte(`{"iss":"x","sub":"1","exp":9999999999}`), jws.WithKey(alg, key))
	if err != nil {
		b.Fatal(err)
	}
	parts := strings.Split(string(tok), ".")
	k := jwkOf(b, pub)
	b.ReportAllocs()
	for b.Loop() {
		if !verifySignature(alg.String(), k, parts[0]+"."+parts[1], parts[2]) {
			b.Fatal("did not verify")
		}
	}
}

// BenchmarkRS256Verify: one RS256 (2048-bit) signature verification, with
// the key's modulus prepared as the key set's reader prepares it.
func BenchmarkRS256Verify(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	benchSignature(b, jwa.RS256, k, k.Public())
}

// BenchmarkRS256VerifyCryptoRSA: the same verification by
// crypto/rsa.VerifyPKCS1v15 (the reference the harness measures first
// sight against), which computes the modulus' constants every time.
func BenchmarkRS256VerifyCryptoRSA(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	d := sha256.Sum256([]byte("header.payload"))
	sig, _ := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
	b.ReportAllocs()
	for b.Loop() {
		if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, d[:], sig) != nil {
			b.Fatal("did not verify")
		}
	}
}

// BenchmarkES256Verify: one ES256 (P-256) signature verification.
func BenchmarkES256Verify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	benchSignature(b, jwa.ES256, k, k.Public())
}

// rs256Verifier returns an RSA key (kid "k1") and a Verifier trusting it for
// RS256 tokens of issuer iss and audience aud, reading sub, tenant and groups.
func rs256Verifier(tb testing.TB, iss, aud string) (*rsa.PrivateKey, *Verifier) {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := jwk.FromRaw(k.Public())
	if err != nil {
		tb.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	raw, _ := json.Marshal(set)
	ks, err := cache.ParseKeySet(raw)
	if err != nil {
		tb.Fatal(err)
	}
	is := NewIssuer(IssuerConfig{ID: "rs", Issuer: iss, Source: cache.NewStatic(ks), Audiences: []string{aud},
		Algorithms: []string{"RS256"}, UserClaims: []string{"sub"}, TenantClaims: []string{"tenant"}, GroupClaims: []string{"groups"}})
	return k, NewVerifier([]*Issuer{is}, 8192, time.Minute)
}

// BenchmarkVerifyFirstSight: Verify on a token it has not seen (a token
// cache of one entry, two tokens taking turns): parse, claims, key lookup,
// one RS256 verification, cache insert. Beside RS256Verify it is what
// first sight costs over the signature alone.
func BenchmarkVerifyFirstSight(b *testing.B) {
	k, v := rs256Verifier(b, "https://rs.bench", "bench")
	h := jws.NewHeaders()
	_ = h.Set(jws.KeyIDKey, "k1")
	var toks []string
	now := time.Now()
	for i := range 2 {
		c, _ := json.Marshal(map[string]any{"iss": "https://rs.bench", "aud": "bench", "sub": fmt.Sprint("user-", i), "tenant": "acme",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": fmt.Sprint("jti-", i), "scope": "openid profile"})
		t, err := jws.Sign(c, jws.WithKey(jwa.RS256, k, jws.WithProtectedHeaders(h)))
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, string(t))
	}
	tc := NewTokens(1, 16, time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, r := v.Verify(ctx, tc, toks[i%2], now); r != "" {
			b.Fatal(r)
		}
		i++
	}
}
