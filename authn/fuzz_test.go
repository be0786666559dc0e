package authn

import (
	"strings"
	"testing"
)

// Run one target longer with: go test -run '^$' -fuzz '^FuzzExtract$' -fuzztime 10m ./authn/

// FuzzExtract: credential extraction never panics; a token it returns has
// the shape of a JWT; a value it returns was sent (it never invents one).
func FuzzExtract(f *testing.F) {
	s := NewExtractor(ExtractorConfig{APIKeyHeaders: []string{"x-api-key"}, JWTHeaders: []string{"authorization"}, None: []string{"None"}})
	sb := NewExtractor(ExtractorConfig{BearerKeys: true, APIKeyHeaders: []string{"x-api-key"}})
	for _, c := range [][2]string{
		{"abc", "None"}, {"", "Bearer eyJa.eyJb.c"}, {"k", "bearer   eyJa.eyJb.c"}, {"", "Bearer"}, {"", "Bearer "},
		{"a,b", "eyJa.eyJb.c"}, {"", "Basic Zm9v"}, {"", "Bearer k1"}, {"k1", "Bearer k2"}, {" ", "\tBearer\tx"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, key, authz string) {
		h := map[string]string{"x-api-key": key, "authorization": authz}
		for _, e := range []Extractor{s, sb} {
			c, r := e.Extract(h)
			if r != "" {
				continue
			}
			if c.Token != "" && !strings.Contains(authz, c.Token) {
				t.Fatalf("token %q invented from %q", c.Token, authz)
			}
			if _, isBearer := Bearer(strings.TrimSpace(authz)); c.Token != "" && !isBearer && !LooksLikeJWT(c.Token) {
				t.Fatalf("a raw value that is not a JWT was taken as a token: %q", authz)
			}
			if c.Key != "" && !strings.Contains(key, c.Key) && !strings.Contains(authz, c.Key) {
				t.Fatalf("key %q invented", c.Key)
			}
		}
	})
}
