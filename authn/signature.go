package authn

// This file holds the one cryptographic step of token verification.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"

	"github.com/portcullis/portcullis/cache"
)

// verifySignature checks a compact JWS's signature over signingInput
// ("header.payload") with key, for the JWA algorithm alg (RFC 7518 §3).
// The token was already split and its algorithm allow-listed; this is the
// one cryptographic step, done with the standard library directly so the
// token is not parsed a second time, but for RS256, RS384 and RS512 with a
// key whose modulus the key set prepared (verifyPKCS1v15), unless Go's
// FIPS 140 mode is on: then crypto/rsa verifies those too. Unknown
// algorithms and malformed signatures fail.
func verifySignature(alg string, key *cache.JWK, signingInput, sigB64 string) bool {
	pub := key.Public
	bp := borrow()
	sig, ok := decodeBase64(*bp, sigB64)
	defer giveBack(bp, sig)
	if !ok || len(sig) == 0 {
		return false
	}
	var h crypto.Hash
	switch alg {
	case "RS256", "PS256", "ES256":
		h = crypto.SHA256
	case "RS384", "PS384", "ES384":
		h = crypto.SHA384
	case "RS512", "PS512", "ES512":
		h = crypto.SHA512
	case "EdDSA":
		k, ok := pub.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, []byte(signingInput), sig)
	default:
		return false
	}
	digest := hashOf(h, signingInput)
	switch alg[0] {
	case 'R':
		k, ok := pub.(*rsa.PublicKey)
		if ok && key.Modulus != nil && !fips140.Enabled() {
			return verifyPKCS1v15(key.Modulus, k.E, h, digest, sig)
		}
		return ok && rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case 'P':
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}) == nil
	case 'E':
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curveOf[alg] {
			return false // ES256 is P-256 only, ES384 P-384, ES512 P-521 (RFC 7518 §3.4)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size { // JWS ECDSA signatures are R||S, fixed width (RFC 7518 §3.4)
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// curveOf is the one curve each ECDSA algorithm is defined on.
var curveOf = map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}

// hashOf returns the digest of s, copying s into a recycled buffer rather
// than a new one per token.
func hashOf(h crypto.Hash, s string) []byte {
	bp := borrow()
	b := append((*bp)[:0], s...)
	defer giveBack(bp, b)
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(b)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return d[:]
	default:
		d := sha512.Sum512(b)
		return d[:]
	}
}
