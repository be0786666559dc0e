package policy

import (
	"crypto/sha256"
	"strings"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/reason"
)

// maxKeyBytes bounds an API key; longer values are rejected unhashed.
const maxKeyBytes = 512

// credentials are what a request presents, before verification.
type credentials struct {
	key   string
	token string
}

// extract reads the API key and the JWT from the configured headers. Two
// different values for one credential are ambiguous and denied.
func (s *Snapshot) extract(h map[string]string) (credentials, reason.Code) {
	var c credentials
	set := func(dst *string, v string) reason.Code {
		if *dst != "" && *dst != v {
			return reason.AmbiguousCredential
		}
		*dst = v
		return ""
	}
	for _, name := range s.apiKeyHeaders {
		if v := strings.TrimSpace(h[name]); v != "" {
			if r := set(&c.key, v); r != "" {
				return c, r
			}
		}
	}
	if s.bearerKeys && !containsStr(s.jwtHeaders, "authorization") {
		if v := strings.TrimSpace(h["authorization"]); v != "" {
			rest, ok := bearer(v)
			if !ok || rest == "" {
				return c, reason.InvalidAPIKey
			}
			if r := set(&c.key, rest); r != "" {
				return c, r
			}
		}
	}
	for _, name := range s.jwtHeaders {
		v := strings.TrimSpace(h[name])
		if v == "" || s.isNone(v) {
			continue
		}
		rest, isBearer := bearer(v)
		switch {
		case isBearer && rest == "":
			return c, reason.InvalidToken
		case isBearer && s.bearerKeys && name == "authorization" && !looksLikeJWT(rest):
			// Bearer keys and tokens share the header: the shape decides.
			if r := set(&c.key, rest); r != "" {
				return c, r
			}
			continue
		case isBearer:
			// A token, whatever it looks like: verification refuses
			// garbage (and remembers it), so it is not scanned twice.
			v = rest
		case !looksLikeJWT(v):
			return c, reason.InvalidToken
		}
		// v is a token: "Bearer <jwt>" or a raw JWT (Cognito id tokens).
		if r := set(&c.token, v); r != "" {
			return c, r
		}
	}
	return c, ""
}

func (s *Snapshot) isNone(v string) bool {
	for _, n := range s.noneValues {
		if strings.EqualFold(v, n) {
			return true
		}
	}
	return false
}

// bearer splits "Bearer <value>" (scheme case-insensitive); ok is false
// when v has another or no scheme.
func bearer(v string) (rest string, ok bool) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	if len(v) == len(scheme) {
		return "", true
	}
	if v[len(scheme)] != ' ' && v[len(scheme)] != '\t' {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme)+1:]), true
}

// looksLikeJWT reports whether v has the shape of a compact JWS: three
// base64url segments.
func looksLikeJWT(v string) bool {
	if !strings.HasPrefix(v, "eyJ") {
		return false
	}
	dots := 0
	for i := 0; i < len(v); i++ {
		switch class := jwtByte[v[i]]; class {
		case 0:
			return false
		case 2:
			dots++
		}
	}
	return dots == 2
}

// jwtByte classifies the bytes of a compact JWS: 1 base64url, 2 ".", 0 any
// other (a table: this runs over every byte of every token presented).
var jwtByte = func() (t [256]uint8) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = 1
	}
	t['.'] = 2
	return t
}()

func containsStr(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// lookupKey finds the entry for a presented key by its SHA-256 digest.
//
// The lookup is a map access keyed by the digest, and that is no timing
// oracle: what its timing could reveal is how SHA-256(presented) compares
// with stored digests (a bucket, a shared prefix), and an attacker who chose
// the presented value learns nothing from that about any stored key, since
// knowing even a whole stored digest does not give its preimage. There is
// no second comparison to make constant-time: the map's key equality is
// the comparison, and the stored value is never compared byte by byte
// with anything the client sent.
func (s *Snapshot) lookupKey(plain string, now time.Time) (*Key, reason.Code) {
	if len(plain) > maxKeyBytes {
		return nil, reason.InvalidAPIKey
	}
	k := s.keys[cache.Digest(sha256.Sum256([]byte(plain)))]
	if k == nil {
		return nil, reason.InvalidAPIKey
	}
	if k.Disabled {
		return k, reason.KeyDisabled
	}
	if k.expiredAt(now) {
		return k, reason.KeyExpired
	}
	return k, ""
}
