package keys

// This file holds how new keys are minted.

import (
	"crypto/rand"
	"math/big"
)

// DefaultPrefix marks minted keys so secret scanners can find leaked ones.
const DefaultPrefix = "pk_live_"

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// New returns a new key: prefix and 43 base62 characters (256 bits from
// crypto/rand). It is the only function of the package that returns a
// plaintext key; show it once and keep only its DigestOf.
func New(prefix string) (string, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 256))
	if err != nil {
		return "", err
	}
	b := make([]byte, 43)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := range b {
		n.DivMod(n, base, mod)
		b[i] = base62[mod.Int64()]
	}
	return prefix + string(b), nil
}
