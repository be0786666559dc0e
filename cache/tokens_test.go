package cache_test

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

func TestTokensExpireWithTheToken(t *testing.T) {
	c := cache.NewTokens[string, string](10, 10, time.Minute)
	now := time.Now()
	d := cache.DigestOf("token-a")
	c.AddVerified(d, "alice", now.Add(time.Second))
	if v, ok := c.Verified(d, now); !ok || v != "alice" {
		t.Fatalf("fresh entry: %q %v", v, ok)
	}
	if _, ok := c.Verified(d, now.Add(time.Second)); ok {
		t.Fatal("entry outlived the token's expiry")
	}
	if c.Len() != 0 {
		t.Fatal("expired entry not removed")
	}
}

func TestTokensBounded(t *testing.T) {
	c := cache.NewTokens[int, string](3, 3, time.Minute)
	exp := time.Now().Add(time.Hour)
	for i := range 10 {
		c.AddVerified(cache.DigestOf(string(rune('a'+i))), i, exp)
	}
	if c.Len() != 3 {
		t.Fatalf("len = %d, want 3", c.Len())
	}
	if _, ok := c.Verified(cache.DigestOf("a"), time.Now()); ok {
		t.Fatal("least recently used entry kept")
	}
}

func TestTokensFailures(t *testing.T) {
	c := cache.NewTokens[int, string](3, 3, time.Minute)
	d := cache.DigestOf("garbage")
	if _, ok := c.Failed(d); ok {
		t.Fatal("unknown digest reported failed")
	}
	c.AddFailed(d, "token_signature_invalid")
	if r, ok := c.Failed(d); !ok || r != "token_signature_invalid" {
		t.Fatalf("failure not cached: %q %v", r, ok)
	}
	if _, ok := c.Verified(d, time.Now()); ok {
		t.Fatal("a failure reads as verified")
	}
	if cache.DigestOf("garbage") == cache.DigestOf("garbagf") {
		t.Fatal("digests collide")
	}
}
