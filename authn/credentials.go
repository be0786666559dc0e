package authn

// This file holds credential extraction: which header holds the API key
// and which the token.

import (
	"slices"
	"strings"

	"github.com/portcullis/portcullis/reason"
)

// Credentials are what a request presents, before verification.
type Credentials struct {
	Key   string // an API key, or ""
	Token string // a compact JWS, or ""
}

// ExtractorConfig says where credentials are read from.
type ExtractorConfig struct {
	APIKeyHeaders []string // lower-case header names an API key is read from
	BearerKeys    bool     // also "Authorization: Bearer <key>"
	JWTHeaders    []string // lower-case header names a token is read from
	None          []string // values meaning "no token" (case-insensitive)
}

// Extractor reads credentials from request headers. It is immutable and
// safe for concurrent use.
type Extractor struct{ cfg ExtractorConfig }

// NewExtractor returns an Extractor for cfg (copied).
func NewExtractor(cfg ExtractorConfig) Extractor {
	cfg.APIKeyHeaders = slices.Clone(cfg.APIKeyHeaders)
	cfg.JWTHeaders = slices.Clone(cfg.JWTHeaders)
	cfg.None = slices.Clone(cfg.None)
	return Extractor{cfg: cfg}
}

// Headers returns every header credentials are read from.
func (e Extractor) Headers() []string {
	out := slices.Clone(e.cfg.APIKeyHeaders)
	if e.cfg.BearerKeys {
		out = appendNew(out, "authorization")
	}
	for _, h := range e.cfg.JWTHeaders {
		out = appendNew(out, h)
	}
	return out
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// Extract reads the API key and the JWT from h (lower-case names). Two
// different values for one credential are ambiguous and denied; a value
// that cannot be a credential of its header is invalid.
func (e Extractor) Extract(h map[string]string) (Credentials, reason.Code) {
	var c Credentials
	set := func(dst *string, v string) reason.Code {
		if *dst != "" && *dst != v {
			return reason.AmbiguousCredential
		}
		*dst = v
		return ""
	}
	for _, name := range e.cfg.APIKeyHeaders {
		if v := strings.TrimSpace(h[name]); v != "" {
			if r := set(&c.Key, v); r != "" {
				return c, r
			}
		}
	}
	if e.cfg.BearerKeys && !slices.Contains(e.cfg.JWTHeaders, "authorization") {
		if v := strings.TrimSpace(h["authorization"]); v != "" {
			rest, ok := Bearer(v)
			if !ok || rest == "" {
				return c, reason.InvalidAPIKey
			}
			if r := set(&c.Key, rest); r != "" {
				return c, r
			}
		}
	}
	for _, name := range e.cfg.JWTHeaders {
		v := strings.TrimSpace(h[name])
		if v == "" || e.isNone(v) {
			continue
		}
		rest, isBearer := Bearer(v)
		switch {
		case isBearer && rest == "":
			return c, reason.InvalidToken
		case isBearer && e.cfg.BearerKeys && name == "authorization" && !LooksLikeJWT(rest):
			// Bearer keys and tokens share the header: the shape decides.
			if r := set(&c.Key, rest); r != "" {
				return c, r
			}
			continue
		case isBearer:
			// A token, whatever it looks like: verification refuses
			// garbage (and remembers it), so it is not scanned twice.
			v = rest
		case !LooksLikeJWT(v):
			return c, reason.InvalidToken
		}
		// v is a token: "Bearer <jwt>" or a raw JWT (Cognito id tokens).
		if r := set(&c.Token, v); r != "" {
			return c, r
		}
	}
	return c, ""
}

func (e Extractor) isNone(v string) bool {
	for _, n := range e.cfg.None {
		if strings.EqualFold(v, n) {
			return true
		}
	}
	return false
}

// Bearer splits "Bearer <value>" (scheme case-insensitive); ok is false
// when v has another or no scheme.
func Bearer(v string) (rest string, ok bool) {
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

// LooksLikeJWT reports whether v has the shape of a compact JWS: three
// base64url segments, the first starting as a JSON object does.
func LooksLikeJWT(v string) bool {
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
