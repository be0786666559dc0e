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
func (v *Verifier) checkClaims(is *Issuer, claims *object, now time.Time, t *Token) (time.Time, reason.Code) {
	exp, ok := numericDate(claims.get("exp"))
	if !ok {
		return time.Time{}, reason.InvalidToken // exp is required
	}
	if !now.Before(exp.Add(v.skew)) {
		return time.Time{}, reason.TokenExpired
	}
	for _, name := range []string{"nbf", "iat"} {
		if c := claims.get(name); c.kind != 0 {
			at, ok := numericDate(c)
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
	for _, name := range is.cfg.GroupClaims {
		if c := claims.get(name); c.kind != 0 {
			t.groups = stringsOf(c)
			break
		}
	}
	t.scopes = stringsOf(claims.get("scope"))
	if t.scopes == nil {
		t.scopes = stringsOf(claims.get("scp"))
	}
	if c := claims.get("token_use"); c.kind == '"' {
		t.use = c.str
	}
	return exp, ""
}

// numericDate reads a NumericDate claim: a JSON number of seconds.
func numericDate(c *claim) (time.Time, bool) {
	f := c.num
	if c.kind != '0' || !c.numOK || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// audienceOK reports whether aud or, for Cognito access tokens that carry
// no aud, client_id is one of the accepted audiences. A string aud is one
// case-sensitive value (RFC 7519 §4.1.3), never split on white space as
// scopes are.
func audienceOK(accepted []string, claims *object) bool {
	switch aud := claims.get("aud"); aud.kind {
	case '"':
		return slices.Contains(accepted, aud.str)
	case '[':
		for _, a := range aud.list {
			if slices.Contains(accepted, a) {
				return true
			}
		}
		return false
	case 0:
		id := claims.get("client_id")
		return id.kind == '"' && slices.Contains(accepted, id.str)
	}
	return false
}

// firstString returns the first of names present in claims as a string; a
// value that is not a string, or holds control characters (it would become
// a header value), is an error.
func firstString(claims *object, names []string) (string, error) {
	for _, n := range names {
		c := claims.get(n)
		if c.kind == 0 {
			continue
		}
		if c.kind != '"' || !headerSafe(c.str) {
			return "", errClaim
		}
		if c.str != "" {
			return c.str, nil
		}
	}
	return "", nil
}

// stringsOf reads a claim that is a list of strings or one space-separated
// string (scopes, groups).
func stringsOf(c *claim) []string {
	switch c.kind {
	case '"':
		return strings.Fields(c.str)
	case '[':
		return c.list // only the string elements, never nil
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
