package authn

import (
	"crypto"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/portcullis/portcullis/cache"
)

// jwkOf returns pub as the key set's reader makes it (an RSA key with its
// modulus prepared), through a JWK set document.
func jwkOf(t testing.TB, pub crypto.PublicKey) *cache.JWK {
	t.Helper()
	k, err := jwk.FromRaw(pub)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(k)
	raw, _ := json.Marshal(set)
	ks, err := cache.ParseKeySet(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ks.All()[0]
}

// rsaKeyWithExponent makes a key of bits with public exponent e (crypto/rsa
// makes only 65537).
func rsaKeyWithExponent(t testing.TB, bits, e int) *rsa.PrivateKey {
	t.Helper()
	E := big.NewInt(int64(e))
	one := big.NewInt(1)
	for {
		p, _ := rand.Prime(rand.Reader, bits/2)
		q, _ := rand.Prime(rand.Reader, bits-bits/2)
		n := new(big.Int).Mul(p, q)
		if p.Cmp(q) == 0 || n.BitLen() != bits {
			continue
		}
		p1, q1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
		phi := new(big.Int).Mul(p1, q1)
		d := new(big.Int).ModInverse(E, phi)
		if d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		return k
	}
}

// rawSign returns em^d mod n, k bytes: a "signature" of any encoding, as
// a forger who could choose the encoding would need.
func rawSign(priv *rsa.PrivateKey, em []byte) []byte {
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), priv.D, priv.N)
	return s.FillBytes(make([]byte, priv.Size()))
}

// encoding builds 0x00 0x01 PS 0x00 prefix digest for a k-byte modulus,
// with PS of 0xff, then lets edit change it.
func encoding(k int, prefix, digest []byte, edit func([]byte) []byte) []byte {
	em := []byte{0x00, 0x01}
	for range k - len(prefix) - len(digest) - 3 {
		em = append(em, 0xff)
	}
	em = append(em, 0x00)
	em = append(append(em, prefix...), digest...)
	if edit != nil {
		em = edit(em)
	}
	return em
}

// TestVerifyPKCS1v15AgreesWithCryptoRSA holds the prepared-modulus
// verification of RS256, RS384 and RS512 to crypto/rsa.VerifyPKCS1v15:
// for keys of 2048, 3072 and 4096 bits with exponents 65537 and 3, every
// hash, it answers exactly what crypto/rsa answers, and verifies only the
// genuine signature, refusing: every flipped byte of it, another digest,
// a signature a byte short or long, values at and above the modulus, 0 and
// 1, and signatures of every malformed encoding a forger could choose (the
// digest of another hash, garbage after the digest as in Bleichenbacher's
// 2006 forgery, a short padding, block type 2, a padding byte that is not
// 0xff, no zero separator, DigestInfo without its NULL parameters).
func TestVerifyPKCS1v15AgreesWithCryptoRSA(t *testing.T) {
	hashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
	sum := func(h crypto.Hash, s string) []byte {
		switch h {
		case crypto.SHA256:
			d := sha256.Sum256([]byte(s))
			return d[:]
		case crypto.SHA384:
			d := sha512.Sum384([]byte(s))
			return d[:]
		}
		d := sha512.Sum512([]byte(s))
		return d[:]
	}
	for _, kc := range []struct{ bits, e int }{{2048, 65537}, {3072, 65537}, {4096, 65537}, {2048, 3}} {
		var priv *rsa.PrivateKey
		if kc.e == 65537 {
			priv, _ = rsa.GenerateKey(rand.Reader, kc.bits)
		} else {
			priv = rsaKeyWithExponent(t, kc.bits, kc.e)
		}
		key := jwkOf(t, &priv.PublicKey)
		if key.Modulus == nil {
			t.Fatalf("%d bits, e=%d: the key set's reader prepared no modulus", kc.bits, kc.e)
		}
		k := priv.Size()
		for _, h := range hashes {
			t.Run(fmt.Sprintf("%d-bit e=%d %s", kc.bits, kc.e, h), func(t *testing.T) {
				digest := sum(h, "header.payload")
				good := rawSign(priv, encoding(k, digestInfo[h], digest, nil))
				type tc struct {
					name   string
					digest []byte
					sig    []byte
				}
				cases := []tc{{"the genuine signature", digest, good}, {"another digest", sum(h, "header.other"), good}}
				for i := 0; i < k; i += max(1, k/17) {
					bad := append([]byte(nil), good...)
					bad[i] ^= 0x01
					cases = append(cases, tc{fmt.Sprintf("byte %d flipped", i), digest, bad})
				}
				n := priv.N.FillBytes(make([]byte, k))
				nPlus1 := new(big.Int).Add(priv.N, big.NewInt(1)).FillBytes(make([]byte, k))
				nMinus1 := new(big.Int).Sub(priv.N, big.NewInt(1)).FillBytes(make([]byte, k))
				one := make([]byte, k)
				one[k-1] = 1
				cases = append(cases,
					tc{"a byte short", digest, good[1:]}, tc{"a byte long", digest, append([]byte{0}, good...)},
					tc{"the modulus", digest, n}, tc{"the modulus + 1", digest, nPlus1}, tc{"the modulus - 1", digest, nMinus1},
					tc{"all ones", digest, bytesOf(k, 0xff)}, tc{"zero", digest, make([]byte, k)}, tc{"one", digest, one},
					tc{"empty", digest, nil})
				for _, other := range hashes {
					if other != h {
						od := sum(other, "header.payload")
						cases = append(cases, tc{"signed as " + other.String(), digest, rawSign(priv, encoding(k, digestInfo[other], od, nil))})
					}
				}
				forged := map[string]func([]byte) []byte{
					"garbage after the digest (Bleichenbacher 2006)": func(em []byte) []byte {
						// 00 01 ff*8 00 DigestInfo digest garbage: the padding shortened to make room.
						tail := em[len(em)-len(digestInfo[h])-len(digest)-1:]
						out := append([]byte{0x00, 0x01}, bytesOf(8, 0xff)...)
						out = append(out, tail...)
						return append(out, bytesOf(k-len(out), 0x42)...)
					},
					"padding of 7 bytes": func(em []byte) []byte {
						out := append([]byte{0x00, 0x01}, bytesOf(7, 0xff)...)
						out = append(out, em[len(em)-len(digestInfo[h])-len(digest)-1:]...)
						return append(make([]byte, k-len(out)), out...)[:k]
					},
					"block type 2":      func(em []byte) []byte { em[1] = 0x02; return em },
					"a padding of 0xfe": func(em []byte) []byte { em[5] = 0xfe; return em },
					"no zero separator": func(em []byte) []byte { em[k-len(digestInfo[h])-len(digest)-1] = 0xff; return em },
					"DigestInfo without NULL parameters": func([]byte) []byte {
						p := digestInfo[h]
						noNull := append([]byte{p[0], p[1] - 2, p[2], p[3] - 2}, p[4:15]...) // drop 05 00
						noNull = append(noNull, p[17:]...)
						return encoding(k, noNull, digest, nil)
					},
				}
				for name, edit := range forged {
					cases = append(cases, tc{name, digest, rawSign(priv, encoding(k, digestInfo[h], digest, edit))})
				}
				for _, c := range cases {
					want := rsa.VerifyPKCS1v15(&priv.PublicKey, h, c.digest, c.sig) == nil
					got := verifyPKCS1v15(key.Modulus, priv.E, h, c.digest, c.sig)
					if got != want {
						t.Errorf("%s: verified %v, crypto/rsa %v", c.name, got, want)
					}
					if genuine := c.name == "the genuine signature"; got != genuine {
						t.Errorf("%s: verified %v", c.name, got)
					}
				}
			})
		}
	}
}

func bytesOf(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// FuzzVerifyPKCS1v15: whatever the signature and the digest, the
// prepared-modulus verification answers what crypto/rsa answers
// (make fuzz; go test runs the seeds).
func FuzzVerifyPKCS1v15(f *testing.F) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	key := jwkOf(f, &priv.PublicKey)
	d := sha256.Sum256([]byte("header.payload"))
	good, _ := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
	f.Add(good, d[:])
	f.Add(good[1:], d[:])
	f.Add(priv.N.Bytes(), d[:])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, sig, digest []byte) {
		want := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest, sig) == nil
		if got := verifyPKCS1v15(key.Modulus, priv.E, crypto.SHA256, digest, sig); got != want {
			t.Fatalf("verified %v, crypto/rsa %v (sig %x, digest %x)", got, want, sig, digest)
		}
	})
}

// TestVerifyPKCS1v15WantsTheModulusLength: a signature is exactly as long
// as the modulus (RFC 8017 §8.2.2, step 1), even when its value is the
// genuine one written shorter or longer: a genuine signature whose first
// byte is zero verifies, and the same number a byte short, or with another
// zero in front, does not.
func TestVerifyPKCS1v15WantsTheModulusLength(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	key := jwkOf(t, &priv.PublicKey)
	for i := 0; ; i++ {
		d := sha256.Sum256(fmt.Appendf(nil, "header.payload-%d", i))
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		if sig[0] != 0 {
			continue
		}
		if !verifyPKCS1v15(key.Modulus, priv.E, crypto.SHA256, d[:], sig) {
			t.Fatal("a genuine signature starting with a zero byte did not verify")
		}
		for name, s := range map[string][]byte{"a byte short": sig[1:], "a zero more in front": append([]byte{0}, sig...)} {
			if verifyPKCS1v15(key.Modulus, priv.E, crypto.SHA256, d[:], s) {
				t.Errorf("the genuine value %s verified", name)
			}
		}
		return
	}
}

// TestFIPSModeVerifiesWithCryptoRSA: with Go's FIPS 140 mode on
// (GODEBUG=fips140=on), RS256 is verified by crypto/rsa, the validated
// module, not with the prepared modulus. The key here carries another
// key's modulus, so the two ways answer differently: the test runs itself
// again with the mode on and holds each way to its answer.
func TestFIPSModeVerifiesWithCryptoRSA(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	mixed := *jwkOf(t, &priv.PublicKey)
	mixed.Modulus = jwkOf(t, &other.PublicKey).Modulus
	d := sha256.Sum256([]byte("header.payload"))
	sig, _ := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
	verified := verifySignature("RS256", &mixed, "header.payload", base64.RawURLEncoding.EncodeToString(sig))
	if os.Getenv("PORTCULLIS_FIPS_CHILD") == "1" {
		if !fips140.Enabled() {
			t.Fatal("GODEBUG=fips140=on did not turn FIPS 140 mode on")
		}
		if !verified {
			t.Fatal("in FIPS 140 mode the signature was not verified by crypto/rsa with the key itself")
		}
		return
	}
	if verified {
		t.Fatal("outside FIPS 140 mode the prepared modulus was not used")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFIPSModeVerifiesWithCryptoRSA$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=on", "PORTCULLIS_FIPS_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in FIPS 140 mode: %v\n%s", err, out)
	}
}
