package authn

// This file holds token verification: structure, header, issuer, key,
// signature, then claims, through the cache of verified tokens.

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/reason"
)

// Token is what a verified JWT tells. It is immutable and shared through
// the token cache.
type Token struct {
	issuer *Issuer
	key    *cache.JWK
	user   string
	tenant string
	groups []string
	scopes []string
	use    string
}

// Issuer returns the issuer that signed the token.
func (t *Token) Issuer() *Issuer { return t.issuer }

// User returns the user the token names ("" when none).
func (t *Token) User() string { return t.user }

// Tenant returns the tenant the token names, as written ("" when none).
func (t *Token) Tenant() string { return t.tenant }

// HasScope reports whether the token carries scope s (in "scope" or "scp").
func (t *Token) HasScope(s string) bool { return slices.Contains(t.scopes, s) }

// InGroup reports whether the token's groups include g.
func (t *Token) InGroup(g string) bool { return slices.Contains(t.groups, g) }

// Use returns the token's "token_use" (Cognito's access or id).
func (t *Token) Use() string { return t.use }

// failure is a cached verification failure, valid for the verifier it was
// computed by only (audiences and issuers change with the policy).
type failure struct {
	by     *Verifier
	reason reason.Code
}

// Tokens caches verification outcomes across policies: verified tokens
// until their expiry, failures briefly. It is safe for concurrent use.
type Tokens struct {
	c *cache.Tokens[*Token, failure]
}

// NewTokens returns a cache of at most size verified tokens and failSize
// failures, each kept for failTTL.
func NewTokens(size, failSize int, failTTL time.Duration) *Tokens {
	return &Tokens{c: cache.NewTokens[*Token, failure](size, failSize, failTTL)}
}

// Len returns the number of verified tokens cached.
func (t *Tokens) Len() int { return t.c.Len() }

// Stats returns how many look-ups of verified tokens hit and missed.
func (t *Tokens) Stats() (hits, misses uint64) { return t.c.Stats() }

// Verifier verifies the tokens of a policy's issuers. It is immutable and
// safe for concurrent use.
type Verifier struct {
	byIss    map[string]*Issuer
	maxBytes int
	skew     time.Duration
	claims   map[string]int // the claims any check reads, each a slot of a token's claims
	slots    sync.Pool      // of *[]claim, len(claims) zeroed slots: a token's claims are read into one (a verification is the only allocation-heavy path left)
}

// registered are the claims every token's check reads (RFC 7519's, and
// those of scopes and Cognito's token_use).
var registered = []string{"iss", "exp", "nbf", "iat", "aud", "client_id", "scope", "scp", "token_use"}

// headerNames are the JOSE header members a check reads.
var headerNames = map[string]int{"alg": 0, "kid": 1, "crit": 2}

// NewVerifier returns a Verifier trusting issuers, refusing tokens over
// maxBytes before any crypto, and allowing skew on token times.
func NewVerifier(issuers []*Issuer, maxBytes int, skew time.Duration) *Verifier {
	v := &Verifier{byIss: make(map[string]*Issuer, len(issuers)), maxBytes: maxBytes, skew: skew, claims: map[string]int{}}
	slot := func(name string) {
		if _, ok := v.claims[name]; !ok {
			v.claims[name] = len(v.claims)
		}
	}
	for _, name := range registered {
		slot(name)
	}
	for _, is := range issuers {
		v.byIss[is.cfg.Issuer] = is
		for _, list := range [][]string{is.cfg.UserClaims, is.cfg.TenantClaims, is.cfg.GroupClaims} {
			for _, name := range list {
				slot(name)
			}
		}
	}
	return v
}

// Issuers returns the verifier's issuers (a new slice, ordered by "iss").
func (v *Verifier) Issuers() []*Issuer {
	out := make([]*Issuer, 0, len(v.byIss))
	for _, is := range v.byIss {
		out = append(out, is)
	}
	slices.SortFunc(out, func(a, b *Issuer) int { return strings.Compare(a.cfg.Issuer, b.cfg.Issuer) })
	return out
}

// Verify checks raw through tc, verifying it on a miss, and returns what it
// tells or why it is refused.
func (v *Verifier) Verify(ctx context.Context, tc *Tokens, raw string, now time.Time) (*Token, reason.Code) {
	if len(raw) > v.maxBytes {
		return nil, reason.TokenTooLarge
	}
	d := cache.DigestOf(raw)
	if t, ok := tc.c.Verified(d, now); ok {
		if v.stillTrusted(ctx, t) {
			return t, ""
		}
		tc.c.Forget(d)
	}
	if f, ok := tc.c.Failed(d); ok && f.by == v {
		return nil, f.reason
	}
	t, exp, r := v.verify(ctx, raw, now)
	switch r {
	case "":
		tc.c.AddVerified(d, t, exp)
	case reason.TokenUnknownKey, reason.JWKSUnavailable:
		// Not cached: the key set may change any moment.
	default:
		tc.c.AddFailed(d, failure{by: v, reason: r})
	}
	return t, r
}

// stillTrusted reports whether a cached token's issuer is still this
// verifier's, and its signing key still in the issuer's key set.
func (v *Verifier) stillTrusted(ctx context.Context, t *Token) bool {
	if v.byIss[t.issuer.cfg.Issuer] != t.issuer {
		return false
	}
	set, err := t.issuer.cfg.Source.KeySet(ctx)
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

// verify does the full check of a compact JWS and returns what it says and
// its expiry. Only the issuer's JWK set is ever used: jku, x5u and jwk
// header fields are ignored.
func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Token, time.Time, reason.Code) {
	header, rest, ok1 := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || header == "" || payload == "" || strings.Contains(sig, ".") {
		return nil, time.Time{}, reason.InvalidToken
	}
	if sig == "" {
		return nil, time.Time{}, reason.TokenSignature
	}
	var hv [3]claim
	hdr := object{names: headerNames, vals: hv[:]}
	vals := v.borrowSlots()
	defer v.returnSlots(vals)
	claims := object{names: v.claims, vals: *vals}
	if !decodeSegment(header, &hdr) || !decodeSegment(payload, &claims) {
		return nil, time.Time{}, reason.InvalidToken
	}
	if hdr.get("crit").kind != 0 {
		return nil, time.Time{}, reason.InvalidToken // no critical extension is understood
	}
	alg, ok1 := optionalString(hdr.get("alg"))
	kid, ok2 := optionalString(hdr.get("kid"))
	if !ok1 || !ok2 {
		return nil, time.Time{}, reason.InvalidToken
	}
	iss := ""
	if c := claims.get("iss"); c.kind == '"' {
		iss = c.str
	}
	is := v.byIss[iss]
	if is == nil {
		return nil, time.Time{}, reason.TokenUnknownIssuer
	}
	if !slices.Contains(is.cfg.Algorithms, alg) {
		return nil, time.Time{}, reason.TokenAlgorithm
	}
	if kid == "" && is.cfg.RequireKID {
		return nil, time.Time{}, reason.TokenUnknownKey
	}
	key, r := is.findKey(ctx, raw[:len(header)+1+len(payload)], sig, alg, kid)
	if r != "" {
		return nil, time.Time{}, r
	}
	t := &Token{issuer: is, key: key}
	exp, r := v.checkClaims(is, &claims, now, t)
	if r != "" {
		return nil, time.Time{}, r
	}
	return t, exp, ""
}

// borrowSlots returns zeroed slots for a token's claims; returnSlots
// zeroes them (a Token keeps the strings and lists read, never the slots)
// for the next verification.
func (v *Verifier) borrowSlots() *[]claim {
	if p, ok := v.slots.Get().(*[]claim); ok {
		return p
	}
	vals := make([]claim, len(v.claims))
	return &vals
}

func (v *Verifier) returnSlots(p *[]claim) {
	clear(*p)
	v.slots.Put(p)
}

// optionalString reads a header member that is a string when written: ""
// when absent or null; not ok when it is anything else.
func optionalString(c *claim) (string, bool) {
	switch c.kind {
	case '"':
		return c.str, true
	case 0, 'n':
		return "", true
	}
	return "", false
}

// decodeSegment decodes a base64url JSON object segment into o (which
// keeps nothing of the decoded bytes: the strings it keeps are copies).
func decodeSegment(seg string, o *object) bool {
	bp := borrow()
	b, ok := decodeBase64(*bp, seg)
	defer giveBack(bp, b)
	return ok && readObject(b, o)
}

// scratch recycles the buffers token segments are decoded and hashed in.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// borrow returns a recycled buffer; giveBack returns it, keeping b (what
// the borrower grew it into) for the next one unless b is huge.
func borrow() *[]byte { return scratch.Get().(*[]byte) }

func giveBack(bp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*bp = b
	}
	scratch.Put(bp)
}

// decodeBase64 decodes the base64url (unpadded) s into buf's array when it
// fits, growing it otherwise: s is copied behind the decoded bytes' room
// and decoded from there, so that nothing is allocated.
func decodeBase64(buf []byte, s string) ([]byte, bool) {
	enc := base64.RawURLEncoding
	room := enc.DecodedLen(len(s))
	if cap(buf) < room+len(s) {
		buf = make([]byte, 0, room+len(s))
	}
	src := append(buf[room:room], s...)
	n, err := enc.Decode(buf[:room], src)
	return buf[:n], err == nil
}

// findKey returns the issuer's key whose signature over signingInput is sig.
func (is *Issuer) findKey(ctx context.Context, signingInput, sig, alg, kid string) (*cache.JWK, reason.Code) {
	set, err := is.cfg.Source.KeySet(ctx)
	if err != nil {
		return nil, reason.JWKSUnavailable
	}
	cands := candidates(set, kid)
	if len(cands) == 0 && kid != "" {
		// Maybe the IdP rotated: refetch (rate-limited by the source).
		if set, err = is.cfg.Source.Refetch(ctx); err != nil {
			return nil, reason.JWKSUnavailable
		}
		cands = candidates(set, kid)
	}
	if len(cands) == 0 {
		return nil, reason.TokenUnknownKey
	}
	for _, k := range cands {
		if k.Allows(alg) && verifySignature(alg, k, signingInput, sig) {
			return k, ""
		}
	}
	return nil, reason.TokenSignature
}

// candidates returns the keys a token with kid may be signed with: those
// with that kid, or every key for a token without one.
func candidates(set *cache.KeySet, kid string) []*cache.JWK {
	if kid != "" {
		return set.Keys(kid)
	}
	return set.All()
}
