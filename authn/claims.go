package authn

// This file holds the checks of a verified token's claims.

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/reason"
)

var errClaim = errors.New("bad claim")

// checkClaims validates the registered claims, fills t from the issuer's
// identity claims, and returns the token's expiry.
func (v *Verifier) checkClaims(is *Issuer, claims map[string]any, now time.Time, t *Token) (time.Time, reason.Code) {
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return time.Time{}, reason.InvalidToken // exp is required
	}
	if !now.Before(exp.Add(v.skew)) {
		return time.Time{}, reason.TokenExpired
	}
	for _, name := range []string{"nbf", "iat"} {
		if raw, present := claims[name]; present {
			at, ok := numericDate(raw)
			if !ok {
				return time.Time{}, reason.InvalidToken
			}
			if now.Add(v.skew).Before(at) {
				return time.Time{}, reason.TokenNotYetValid
			}
		}
	}
	if !audienceOK(is.cfg.Audiences, claims) {
		return time.Time{}, reason.TokenAudience
	}
	var err error
	if t.user, err = firstString(claims, is.cfg.UserClaims); err != nil {
		return time.Time{}, reason.InvalidToken
	}
	if t.tenant, err = firstString(claims, is.cfg.TenantClaims); err != nil {
		return time.Time{}, reason.InvalidToken
	}
	for _, c := range is.cfg.GroupClaims {
		if g, ok := claims[c]; ok {
			t.groups = stringsOf(g)
			break
		}
	}
	t.scopes = stringsOf(claims["scope"])
	if t.scopes == nil {
		t.scopes = stringsOf(claims["scp"])
	}
	t.use, _ = claims["token_use"].(string)
	return exp, ""
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// audienceOK reports whether aud or, for Cognito access tokens that carry
// no aud, client_id is one of the accepted audiences. A string aud is one
// case-sensitive value (RFC 7519 §4.1.3), never split on white space as
// scopes are.
func audienceOK(accepted []string, claims map[string]any) bool {
	switch aud := claims["aud"].(type) {
	case string:
		return slices.Contains(accepted, aud)
	case []any:
		for _, e := range aud {
			if a, ok := e.(string); ok && slices.Contains(accepted, a) {
				return true
			}
		}
		return false
	}
	if _, hasAud := claims["aud"]; !hasAud {
		if id, ok := claims["client_id"].(string); ok && slices.Contains(accepted, id) {
			return true
		}
	}
	return false
}

// firstString returns the first of names present in claims as a string; a
// value that is not a string, or holds control characters (it would become
// a header value), is an error.
func firstString(claims map[string]any, names []string) (string, error) {
	for _, n := range names {
		v, ok := claims[n]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok || !headerSafe(s) {
			return "", errClaim
		}
		if s != "" {
			return s, nil
		}
	}
	return "", nil
}

// stringsOf reads a claim that is a list of strings or one space-separated
// string (scopes, groups).
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// headerSafe reports whether s can be sent as a header value unchanged.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
