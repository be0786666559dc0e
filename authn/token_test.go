package authn

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/portcullis/portcullis/reason"
)

// TestNoClaimOutlivesItsToken: a token's claims are read into slots that
// the next verification reuses. Verifying tokens that write every claim
// the check reads in turn with tokens that write none of the optional
// ones, each token must be read as written: no user, tenant, group, scope
// or use of the token before, no exp lent to a token without one, and no
// claim of the token before taken for a repeated name.
func TestNoClaimOutlivesItsToken(t *testing.T) {
	k, v := rs256Verifier(t, "https://rs.test", "api")
	now := time.Now()
	jti := 0
	mint := func(claims map[string]any) string {
		jti++
		claims["jti"] = jti // every token new to the cache: each one verified
		c, _ := json.Marshal(claims)
		h := jws.NewHeaders()
		_ = h.Set(jws.KeyIDKey, "k1")
		tok, err := jws.Sign(c, jws.WithKey(jwa.RS256, k, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}
	full := func() string {
		return mint(map[string]any{"iss": "https://rs.test", "aud": "api", "exp": now.Add(time.Hour).Unix(), "sub": "alice", "tenant": "acme",
			"groups": []string{"admins"}, "scope": "read write", "token_use": "access"})
	}
	bare := func() string {
		return mint(map[string]any{"iss": "https://rs.test", "aud": "api", "exp": now.Add(time.Hour).Unix()})
	}
	noExp := func() string { return mint(map[string]any{"iss": "https://rs.test", "aud": "api", "sub": "bob"}) }
	tc := NewTokens(64, 16, time.Second)
	ctx := context.Background()
	for round := range 3 {
		tok, r := v.Verify(ctx, tc, full(), now)
		if r != "" {
			t.Fatalf("round %d: a token writing every claim once: %s", round, r)
		}
		if tok.User() != "alice" || tok.Tenant() != "acme" || !tok.InGroup("admins") || !tok.HasScope("write") || tok.Use() != "access" {
			t.Fatalf("round %d: the full token read as user %q tenant %q groups %v scopes %v use %q", round, tok.User(), tok.Tenant(), tok.groups, tok.scopes, tok.Use())
		}
		tok, r = v.Verify(ctx, tc, bare(), now)
		if r != "" {
			t.Fatalf("round %d: a token writing no optional claim after one writing all: %s", round, r)
		}
		if tok.User() != "" || tok.Tenant() != "" || len(tok.groups) != 0 || len(tok.scopes) != 0 || tok.Use() != "" {
			t.Fatalf("round %d: the bare token read the token before's claims: user %q tenant %q groups %v scopes %v use %q",
				round, tok.User(), tok.Tenant(), tok.groups, tok.scopes, tok.Use())
		}
		if _, r := v.Verify(ctx, tc, noExp(), now); r != reason.InvalidToken {
			t.Fatalf("round %d: a token without exp after one with it: %q, want %q (exp is required)", round, r, reason.InvalidToken)
		}
	}
}
