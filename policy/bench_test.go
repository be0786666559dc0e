package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// go test -run '^$' -bench . -benchmem ./policy/

func benchDecide(b *testing.B, eng *policy.Engine, reqs []policy.Request) {
	ctx := context.Background()
	for _, r := range reqs { // warm the token cache
		eng.Decide(ctx, r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if d := eng.Decide(ctx, reqs[i%len(reqs)]); !d.Allow {
			b.Fatalf("denied: %s", d.Reason)
		}
	}
}

func threeTiersBench(b *testing.B, opts policy.EngineOptions) (*policy.Engine, func(token string) policy.Request, func(name string) string) {
	eng, demo := engineFor(b, "three-tiers")
	eng = policy.NewEngine(eng.Snapshot(), opts)
	key := demo.Key(b, "acme")
	req := func(tok string) policy.Request {
		h := map[string]string{"x-api-key": key, "authorization": "None", ":path": "/images/1", "user-agent": "bench",
			"x-request-id": "2b62daf1-00b9-97d9-91b8-ba6194ef58a4", "x-forwarded-proto": "https"}
		if tok != "" {
			h["authorization"] = "Bearer " + tok
		}
		return policy.Request{Method: "POST", Path: "/images/1?size=2", Headers: h}
	}
	mint := func(name string) string { return demo.Token(b, name, time.Now(), time.Hour, nil) }
	return eng, req, mint
}

// BenchmarkDecideKeyOnly: a service-tier read with an API key.
func BenchmarkDecideKeyOnly(b *testing.B) {
	eng, req, _ := threeTiersBench(b, policy.EngineOptions{})
	r := req("")
	r.Method = "GET"
	benchDecide(b, eng, []policy.Request{r})
}

// BenchmarkDecideCachedToken: key + an already-verified RS256 token, the
// cached decision of the performance contract (docs/design.md §6).
func BenchmarkDecideCachedToken(b *testing.B) {
	eng, req, mint := threeTiersBench(b, policy.EngineOptions{})
	benchDecide(b, eng, []policy.Request{req(mint("alice-access"))})
}

// BenchmarkDecideCachedParallel: the cached decision from GOMAXPROCS
// goroutines at once. Run with -cpu 1,2,4: a path without an exclusive
// lock scales with the cores.
func BenchmarkDecideCachedParallel(b *testing.B) {
	eng, req, mint := threeTiersBench(b, policy.EngineOptions{})
	r := req(mint("alice-access"))
	ctx := context.Background()
	eng.Decide(ctx, r)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d := eng.Decide(ctx, r); !d.Allow {
				b.Errorf("denied: %s", d.Reason)
				return
			}
		}
	})
}

// BenchmarkDecideFirstSightRS256: every check verifies an RS256 signature
// (a one-entry cache and two alternating tokens): the cost of first sight.
func BenchmarkDecideFirstSightRS256(b *testing.B) {
	eng, req, mint := threeTiersBench(b, policy.EngineOptions{TokenCacheSize: 1})
	benchDecide(b, eng, []policy.Request{req(mint("alice-access")), req(mint("alice-id"))})
}

// BenchmarkDecideDeny: the deny path for a wrong key (no hashing of
// anything but the key, no crypto).
func BenchmarkDecideDeny(b *testing.B) {
	eng, req, _ := threeTiersBench(b, policy.EngineOptions{})
	r := req("")
	r.Headers["x-api-key"] = "pk_wrong_0123456789012345678901234567890"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.Decide(ctx, r); d.Allow {
			b.Fatal("allowed")
		}
	}
}
