package policy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/reason"
)

// issuer is one trusted token issuer of a Snapshot.
type issuer struct {
	id         string
	iss        string
	source     cache.Source
	audiences  []string
	algs       []string
	requireKID bool

	userClaims, tenantClaims, groupClaims []string
}

// token is what a verified JWT tells: immutable, shared through the cache.
type token struct {
	issuer *issuer
	key    *cache.Key
	user   string
	tenant string
	groups []string
	scopes []string
	use    string
}

// failure is a cached verification failure, valid for the snapshot it was
// computed under only (audiences and issuers change with the policy).
type failure struct {
	snap   *Snapshot
	reason reason.Code
}

// tokenCache is the engine's verified-token cache.
type tokenCache = cache.Tokens[*token, failure]

// verifyToken checks raw through the token cache, verifying it on a miss.
func (s *Snapshot) verifyToken(ctx context.Context, tc *tokenCache, raw string, now time.Time) (*token, reason.Code) {
	if len(raw) > s.maxTokenBytes {
		return nil, reason.TokenTooLarge
	}
	d := cache.DigestOf(raw)
	if t, ok := tc.Verified(d, now); ok {
		if s.stillTrusted(ctx, t) {
			return t, ""
		}
		tc.Forget(d)
	}
	if f, ok := tc.Failed(d); ok && f.snap == s {
		return nil, f.reason
	}
	t, exp, r := s.verify(ctx, raw, now)
	switch r {
	case "":
		tc.AddVerified(d, t, exp)
	case reason.TokenUnknownKey, reason.JWKSUnavailable:
		// Not cached: the key set may change any moment.
	default:
		tc.AddFailed(d, failure{snap: s, reason: r})
	}
	return t, r
}

// stillTrusted reports whether a cached token's issuer is still this
// snapshot's, and its signing key still in the issuer's key set.
func (s *Snapshot) stillTrusted(ctx context.Context, t *token) bool {
	if s.issuers[t.issuer.id] != t.issuer {
		return false
	}
	set, err := t.issuer.source.KeySet(ctx)
	if err != nil {
		return false
	}
	cands := set.Anonymous()
	if t.key.ID != "" {
		cands = set.Keys(t.key.ID)
	}
	for _, k := range cands {
		if k.Equal(t.key) {
			return true
		}
	}
	return false
}

type joseHeader struct {
	Alg  string          `json:"alg"`
	Kid  *string         `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// verify does the full check of a compact JWS token: structure, header,
// issuer, key, signature, then claims, and returns what it says and its
// expiry. Only the issuer's JWK set is ever used: jku, x5u and jwk header
// fields are ignored.
func (s *Snapshot) verify(ctx context.Context, raw string, now time.Time) (*token, time.Time, reason.Code) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, time.Time{}, reason.InvalidToken
	}
	if parts[2] == "" {
		return nil, time.Time{}, reason.TokenSignature
	}
	var hdr joseHeader
	if !decodeSegment(parts[0], &hdr) {
		return nil, time.Time{}, reason.InvalidToken
	}
	claims := map[string]any{}
	if !decodeSegment(parts[1], &claims) {
		return nil, time.Time{}, reason.InvalidToken
	}
	if len(hdr.Crit) > 0 {
		return nil, time.Time{}, reason.InvalidToken // no critical extension is understood
	}
	iss, _ := claims["iss"].(string)
	is := s.byIss[iss]
	if is == nil {
		return nil, time.Time{}, reason.TokenUnknownIssuer
	}
	if !slices.Contains(is.algs, hdr.Alg) {
		return nil, time.Time{}, reason.TokenAlgorithm
	}
	kid := ""
	if hdr.Kid != nil {
		kid = *hdr.Kid
	}
	if kid == "" && is.requireKID {
		return nil, time.Time{}, reason.TokenUnknownKey
	}
	key, r := is.findKey(ctx, parts[0]+"."+parts[1], parts[2], hdr.Alg, kid)
	if r != "" {
		return nil, time.Time{}, r
	}
	t := &token{issuer: is, key: key}
	exp, r := s.checkClaims(is, claims, now, t)
	if r != "" {
		return nil, time.Time{}, r
	}
	return t, exp, ""
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// findKey returns the issuer's key whose signature over signingInput is sig.
func (is *issuer) findKey(ctx context.Context, signingInput, sig, alg, kid string) (*cache.Key, reason.Code) {
	set, err := is.source.KeySet(ctx)
	if err != nil {
		return nil, reason.JWKSUnavailable
	}
	cands := candidates(set, kid)
	if len(cands) == 0 && kid != "" {
		// Maybe the IdP rotated: refetch (rate-limited by the source).
		if set, err = is.source.Refetch(ctx); err != nil {
			return nil, reason.JWKSUnavailable
		}
		cands = candidates(set, kid)
	}
	if len(cands) == 0 {
		return nil, reason.TokenUnknownKey
	}
	for _, k := range cands {
		if !k.Allows(alg) {
			continue
		}
		if verifySignature(alg, k.Public, signingInput, sig) {
			return k, ""
		}
	}
	return nil, reason.TokenSignature
}

// candidates returns the keys a token with kid may be signed with: those
// with that kid, or every key for a token without one.
func candidates(set *cache.KeySet, kid string) []*cache.Key {
	if kid != "" {
		return set.Keys(kid)
	}
	return set.All()
}

var errClaim = errors.New("bad claim")

// checkClaims validates the registered claims, fills t from the configured
// identity claims, and returns the token's expiry.
func (s *Snapshot) checkClaims(is *issuer, claims map[string]any, now time.Time, t *token) (time.Time, reason.Code) {
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return time.Time{}, reason.InvalidToken // exp is required
	}
	if !now.Before(exp.Add(s.skew)) {
		return time.Time{}, reason.TokenExpired
	}
	if v, present := claims["nbf"]; present {
		nbf, ok := numericDate(v)
		if !ok {
			return time.Time{}, reason.InvalidToken
		}
		if now.Add(s.skew).Before(nbf) {
			return time.Time{}, reason.TokenNotYetValid
		}
	}
	if v, present := claims["iat"]; present {
		iat, ok := numericDate(v)
		if !ok {
			return time.Time{}, reason.InvalidToken
		}
		if now.Add(s.skew).Before(iat) {
			return time.Time{}, reason.TokenNotYetValid
		}
	}
	if !audienceOK(is.audiences, claims) {
		return time.Time{}, reason.TokenAudience
	}
	var err error
	if t.user, err = firstString(claims, is.userClaims); err != nil {
		return time.Time{}, reason.InvalidToken
	}
	if t.tenant, err = firstString(claims, is.tenantClaims); err != nil {
		return time.Time{}, reason.InvalidToken
	}
	for _, c := range is.groupClaims {
		if v, ok := claims[c]; ok {
			t.groups = stringsOf(v)
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

// audienceOK reports whether aud (a string or a list) or, for Cognito access
// tokens that carry no aud, client_id is one of the accepted audiences.
// A string aud is one case-sensitive value (RFC 7519 §4.1.3), never split on
// white space as scopes are.
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
// string.
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
