package authn

// This file holds RSASSA-PKCS1-v1_5 verification with a modulus prepared
// once per key.

import (
	"crypto"
	"crypto/subtle"

	"filippo.io/bigmod"
)

// digestInfo is the DER encoding of each hash's DigestInfo that comes
// before the digest in an EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2, note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// verifyPKCS1v15 reports whether sig is an RSASSA-PKCS1-v1_5 signature of
// digest, made with h, under the public key (n, e), step by step as RFC
// 8017 §8.2.2 says and crypto/rsa.VerifyPKCS1v15 does: sig is exactly as
// long as the modulus and less than it; s^e mod n is, byte for byte, the
// encoding EMSA-PKCS1-v1_5 makes of the digest. Every byte is held to the
// one the encoding puts in its place, which the modulus' length and the
// hash fix; nothing is parsed, so no variant of its padding or DigestInfo
// can pass. What differs from crypto/rsa is only that n keeps
// its Montgomery constants (cache.JWK.Modulus) instead of having them
// computed again for every signature. n must be odd and e odd and at least
// 3 (the key set's reader refuses other keys).
func verifyPKCS1v15(n *bigmod.Modulus, e int, h crypto.Hash, digest, sig []byte) bool {
	prefix, ok := digestInfo[h]
	k := n.Size()
	tLen := len(prefix) + len(digest)
	if !ok || len(digest) != h.Size() || len(sig) != k || k < tLen+11 || e < 3 || e&1 == 0 {
		return false
	}
	s, err := bigmod.NewNat().SetBytes(sig, n)
	if err != nil { // s ≥ n
		return false
	}
	em := bigmod.NewNat().ExpShortVarTime(s, uint(e), n).Bytes(n)
	// EM = 0x00 || 0x01 || PS || 0x00 || DigestInfo || digest, PS being
	// k - tLen - 3 bytes of 0xff (at least 8): every byte's place is fixed
	// by k and the hash, so each is compared with what belongs there, as
	// comparing with the whole encoding built would, without building it
	// (a buffer on the stack grew every checking goroutine's stack).
	sep := k - tLen - 1
	if em[0] != 0x00 || em[1] != 0x01 || em[sep] != 0x00 {
		return false
	}
	for _, b := range em[2:sep] {
		if b != 0xff {
			return false
		}
	}
	return subtle.ConstantTimeCompare(em[sep+1:k-len(digest)], prefix) == 1 && subtle.ConstantTimeCompare(em[k-len(digest):], digest) == 1
}
