package cache

// This file holds JWK sets: parsing a set and keeping the keys that can verify.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"

	"filippo.io/bigmod"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// MinRSABits is the shortest RSA modulus a key set may use; shorter keys are
// skipped when the set is parsed and can never verify a token.
const MinRSABits = 2048

// JWK is one verification key of a JWK set: a public key and the JWS
// algorithms it may verify. A JWK is immutable and safe for concurrent use.
type JWK struct {
	ID     string
	Public crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	// Modulus is an RSA key's modulus with its Montgomery constants,
	// computed once when the key is read (nil for other keys): crypto/rsa
	// computes them again on every verification, about a third of its cost.
	// The key's modulus is odd and its exponent odd and at least 3.
	Modulus *bigmod.Modulus
	algs    []string
}

// Allows reports whether k may verify a signature made with alg.
func (k *JWK) Allows(alg string) bool { return slices.Contains(k.algs, alg) }

// Equal reports whether k and o hold the same public key under the same id.
func (k *JWK) Equal(o *JWK) bool {
	if k == o {
		return true
	}
	if k == nil || o == nil || k.ID != o.ID {
		return false
	}
	pk, ok := k.Public.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pk.Equal(o.Public)
}

// KeySet is an immutable, parsed JWK set holding only the keys that can
// verify signatures. It is safe for concurrent use.
type KeySet struct {
	byID    map[string][]*JWK
	anon    []*JWK
	all     []*JWK
	skipped []string
}

// Keys returns the keys whose "kid" is kid.
func (s *KeySet) Keys(kid string) []*JWK { return s.byID[kid] }

// Anonymous returns the keys that have no "kid".
func (s *KeySet) Anonymous() []*JWK { return s.anon }

// All returns every usable key, in document order.
func (s *KeySet) All() []*JWK { return s.all }

// Len returns the number of usable keys.
func (s *KeySet) Len() int { return len(s.all) }

// Skipped says, one line per key, which keys of the document were left out
// and why (encryption keys, symmetric keys, short RSA keys, …).
func (s *KeySet) Skipped() []string { return s.skipped }

// ParseKeySet parses a JWK set document ({"keys": [...]}) and keeps the keys
// usable for signature verification: RSA (at least MinRSABits), EC P-256,
// P-384, P-521 and Ed25519 public keys, not marked "use": "enc". Keys that
// cannot be used are skipped (see Skipped), not fatal; a document that is not
// a JWK set, or that holds no usable key, is an error.
func ParseKeySet(data []byte) (*KeySet, error) {
	var doc struct {
		Keys *[]jsontext.Value `json:"keys"`
	}
	if err := strictJSON(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`parsing JWK set: no "keys" array (a JWK set is {"keys": [...]}; ` +
			`certificate maps and single keys are not accepted)`)
	}
	s := &KeySet{byID: map[string][]*JWK{}}
	for i, raw := range *doc.Keys {
		k, why := parseKey(raw)
		if k == nil {
			s.skipped = append(s.skipped, fmt.Sprintf("keys[%d]: %s", i, why))
			continue
		}
		s.all = append(s.all, k)
		if k.ID == "" {
			s.anon = append(s.anon, k)
		} else {
			s.byID[k.ID] = append(s.byID[k.ID], k)
		}
	}
	if s.Len() == 0 {
		return nil, fmt.Errorf("parsing JWK set: no usable signature key among %d (%s)",
			len(*doc.Keys), joinOr(s.skipped, "the set is empty"))
	}
	return s, nil
}

func joinOr(lines []string, empty string) string {
	if len(lines) == 0 {
		return empty
	}
	var b bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	return b.String()
}

var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// parseKey returns the usable key in raw, or nil and why it is not usable.
func parseKey(raw []byte) (*JWK, string) {
	jk, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, "not a valid JWK: " + err.Error()
	}
	if u := jk.KeyUsage(); u != "" && u != "sig" {
		return nil, fmt.Sprintf("use %q is not \"sig\"", u)
	}
	if ops := jk.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
		return nil, "key_ops does not include \"verify\""
	}
	pub, err := jwk.PublicKeyOf(jk)
	if err != nil {
		return nil, "no public key: " + err.Error()
	}
	var rawKey any
	if err := pub.Raw(&rawKey); err != nil {
		return nil, "no public key: " + err.Error()
	}
	declared := ""
	if a := jk.Algorithm(); a != nil {
		declared = a.String()
	}
	var algs []string
	var mod *bigmod.Modulus
	switch pk := rawKey.(type) {
	case *rsa.PublicKey:
		if bits := pk.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Sprintf("RSA key of %d bits is shorter than %d", bits, MinRSABits)
		}
		// What crypto/rsa refuses at every verification, refused once: an
		// exponent of 1 would make every signature its own message.
		if pk.N.Bit(0) == 0 {
			return nil, "RSA modulus is even"
		}
		if pk.E < 3 || pk.E&1 == 0 || pk.E > 1<<31-1 {
			return nil, fmt.Sprintf("RSA exponent %d is not an odd number from 3 to 2^31-1", pk.E)
		}
		if mod, err = bigmod.NewModulus(pk.N.Bytes()); err != nil {
			return nil, "RSA modulus: " + err.Error()
		}
		algs = rsaAlgs
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			algs = []string{"ES256"}
		case elliptic.P384():
			algs = []string{"ES384"}
		case elliptic.P521():
			algs = []string{"ES512"}
		default:
			return nil, "unsupported EC curve"
		}
	case ed25519.PublicKey:
		algs = []string{"EdDSA"}
	default:
		return nil, fmt.Sprintf("key type %q cannot verify signatures", jk.KeyType())
	}
	if declared != "" {
		if !slices.Contains(algs, declared) {
			return nil, fmt.Sprintf("alg %q does not fit the key type %s", declared, jk.KeyType())
		}
		algs = []string{declared}
	}
	return &JWK{ID: jk.KeyID(), Public: rawKey, Modulus: mod, algs: algs}, ""
}
