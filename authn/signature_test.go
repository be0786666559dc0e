package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/portcullis/portcullis/cache"
)

// TestVerifySignature cross-checks verifySignature against tokens signed by
// jwx for every allowed algorithm, and refuses tampered signatures, the
// wrong key type, and signatures of the wrong shape.
func TestVerifySignature(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		alg  string
		priv any
		pub  crypto.PublicKey
	}{
		{"RS256", rsaKey, rsaKey.Public()}, {"RS384", rsaKey, rsaKey.Public()}, {"RS512", rsaKey, rsaKey.Public()},
		{"PS256", rsaKey, rsaKey.Public()}, {"PS384", rsaKey, rsaKey.Public()}, {"PS512", rsaKey, rsaKey.Public()},
		{"ES256", p256, p256.Public()}, {"ES384", p384, p384.Public()}, {"ES512", p521, p521.Public()},
		{"EdDSA", edPriv, edPub},
	}
	if len(cases) != len(supported) {
		t.Fatalf("%d cases for %d allowed algorithms", len(cases), len(supported))
	}
	for _, tc := range cases {
		// As the key set's reader makes the key (an RSA modulus prepared),
		// and, for RSA, as crypto/rsa alone verifies it.
		ways := map[string]*cache.JWK{"prepared": jwkOf(t, tc.pub)}
		if _, ok := tc.pub.(*rsa.PublicKey); ok {
			ways["crypto/rsa"] = &cache.JWK{Public: tc.pub}
		}
		for way, key := range ways {
			t.Run(tc.alg+" "+way, func(t *testing.T) {
				tok, err := jws.Sign([]byte(`{"sub":"1"}`), jws.WithKey(jwa.SignatureAlgorithm(tc.alg), tc.priv))
				if err != nil {
					t.Fatal(err)
				}
				parts := strings.Split(string(tok), ".")
				input := parts[0] + "." + parts[1]
				if !verifySignature(tc.alg, key, input, parts[2]) {
					t.Fatal("a valid signature did not verify")
				}
				if verifySignature(tc.alg, key, parts[0]+".eyJzdWIiOiIyIn0", parts[2]) {
					t.Fatal("a signature verified over another payload")
				}
				flipped := []byte(parts[2])
				flipped[5] ^= 0x01
				if verifySignature(tc.alg, key, input, string(flipped)) {
					t.Fatal("an altered signature verified")
				}
				if verifySignature(tc.alg, key, input, parts[2]+"AA") || verifySignature(tc.alg, key, input, "") {
					t.Fatal("a signature of the wrong length verified")
				}
				for _, other := range []crypto.PublicKey{rsaKey.Public(), p256.Public(), edPub} {
					if fmt.Sprintf("%T", other) == fmt.Sprintf("%T", tc.pub) {
						continue
					}
					if verifySignature(tc.alg, jwkOf(t, other), input, parts[2]) {
						t.Fatalf("verified with a %T", other)
					}
				}
			})
		}
	}
	if verifySignature("HS256", jwkOf(t, rsaKey.Public()), "a.b", "c2ln") || verifySignature("none", &cache.JWK{}, "a.b", "") {
		t.Fatal("an algorithm outside the allow-list verified")
	}
}

// TestECDSACurveIsTheAlgorithms: an ECDSA key verifies only the algorithm
// of its own curve. Each case is a signature the key really made over the
// algorithm's hash, of the length the key's curve gives, so nothing but
// the explicit curve check refuses it.
func TestECDSACurveIsTheAlgorithms(t *testing.T) {
	keys := map[string]*ecdsa.PrivateKey{}
	for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		keys[name], _ = ecdsa.GenerateKey(c, rand.Reader)
	}
	own := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
	hashes := map[string]crypto.Hash{"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512}
	input := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0"
	for alg, h := range hashes {
		for curve, k := range keys {
			r, s, err := ecdsa.Sign(rand.Reader, k, hashOf(h, input))
			if err != nil {
				t.Fatal(err)
			}
			size := (k.Curve.Params().BitSize + 7) / 8
			sig := make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
			got := verifySignature(alg, jwkOf(t, &k.PublicKey), input, base64.RawURLEncoding.EncodeToString(sig))
			if want := own[alg] == curve; got != want {
				t.Errorf("%s with a %s key: verified %v, want %v", alg, curve, got, want)
			}
		}
	}
}
