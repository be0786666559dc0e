package keys

// This file holds how new keys are minted, and the checksum that lets a
// mistyped or invented key be refused without a look-up.

import (
	"crypto/rand"
	"hash/crc32"
	"math/big"
	"strings"
)

// DefaultPrefix marks minted keys so secret scanners can find leaked ones.
const DefaultPrefix = "pk_live_"

const (
	base62     = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomLen  = 43 // 256 bits in base62
	checkLen   = 6  // a CRC-32 in base62
	mintedBody = randomLen + checkLen
)

// New returns a new key: prefix, 43 base62 characters (256 bits from
// crypto/rand) and a 6-character base62 CRC-32 of all that comes before it
// (GitHub's token format is the model). It is the only function of the
// package that returns a plaintext key: show it once and keep only its
// DigestOf.
func New(prefix string) (string, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 256))
	if err != nil {
		return "", err
	}
	b := make([]byte, randomLen)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := range b {
		n.DivMod(n, base, mod)
		b[i] = base62[mod.Int64()]
	}
	key := prefix + string(b)
	return key + checksum(key), nil
}

// checksum returns the base62 CRC-32 of s, 6 characters, zero-padded.
func checksum(s string) string {
	c := crc32.ChecksumIEEE([]byte(s))
	out := make([]byte, checkLen)
	for i := checkLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out)
}

// Minted reports whether s is a key in the minted format with its own
// checksum: certainly a key, whatever field it was sent in.
func Minted(s string) bool {
	body, ok := strings.CutPrefix(s, DefaultPrefix)
	return ok && len(body) == mintedBody && checksum(s[:len(s)-checkLen]) == s[len(s)-checkLen:]
}

// WellFormed reports whether key could be a key: a key in the minted
// format (DefaultPrefix and 49 base62 characters) must carry its own
// checksum. Any other key (older formats, other prefixes) is well formed:
// only a look-up can tell.
func WellFormed(key string) bool {
	body, ok := strings.CutPrefix(key, DefaultPrefix)
	if !ok || len(body) != mintedBody {
		return true
	}
	return checksum(key[:len(key)-checkLen]) == key[len(key)-checkLen:]
}
