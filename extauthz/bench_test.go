package extauthz

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// go test -run '^$' -bench . -benchmem -cpu 1,2,4 ./extauthz/

// benchServer returns a Server on the three-tiers example and a cached
// check's request: an admin-tier write with a key and a verified token.
func benchServer(b *testing.B) (*Server, *authv3.CheckRequest) {
	demo := testkit.Load(b, "three-tiers")
	snap, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := NewServer(policy.NewEngine(snap, policy.EngineOptions{}), nil)
	tok := demo.Token(b, "alice-access", time.Now(), time.Hour, nil)
	h := map[string]string{"x-api-key": demo.Key(b, "acme"), "authorization": "Bearer " + tok, ":path": "/images/1",
		":method": "POST", "x-request-id": "2b62daf1-00b9-97d9-91b8-ba6194ef58a4", "user-agent": "bench"}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/images/1?size=2", Host: "api.example", Headers: h}}}}
	if w := s.check(context.Background(), req); len(w.base) == 0 {
		b.Fatal("no response")
	}
	return s, req
}

// BenchmarkCheckCached: the cached decision as the gRPC service makes it,
// from the decoded CheckRequest to the bytes written.
func BenchmarkCheckCached(b *testing.B) {
	s, req := benchServer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.check(ctx, req)
	}
}

// BenchmarkCheckCachedParallel: the same from GOMAXPROCS goroutines at
// once. Run with -cpu 1,2,4: the cached path takes no exclusive lock (the
// token and response caches are read without one), so it scales with the
// cores.
func BenchmarkCheckCachedParallel(b *testing.B) {
	s, req := benchServer(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.check(ctx, req)
		}
	})
}

// BenchmarkCheckDeny: the deny path as the gRPC service takes it, half
// wrong keys and half a valid key with a token whose signature is bad (its
// failure cached): no slower than the allow of BenchmarkCheckCached.
func BenchmarkCheckDeny(b *testing.B) {
	s, allow := benchServer(b)
	h := allow.GetAttributes().GetRequest().GetHttp().GetHeaders()
	tok := h["authorization"]
	badSig := tok[:strings.LastIndexByte(tok, '.')+1] + strings.Repeat("A", 342)
	var reqs []*authv3.CheckRequest
	for i := range 100 {
		wrong := maps.Clone(h)
		wrong["x-api-key"] = fmt.Sprintf("pk_wrong_%032d", i)
		delete(wrong, "authorization")
		bad := maps.Clone(h)
		bad["authorization"] = badSig + strconv.Itoa(i%10)
		for _, hh := range []map[string]string{wrong, bad} {
			reqs = append(reqs, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/images/1", Host: "api.example", Headers: hh}}}})
		}
	}
	ctx := context.Background()
	for _, r := range reqs { // failures cached
		s.check(ctx, r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.check(ctx, reqs[i%len(reqs)])
		i++
	}
}

// BenchmarkResponseFirstSight: the answer to a decision whose identity was
// never seen (a token at first sight naming a new user): encoded whole, not
// cached (TestResponseCachedOnSecondMiss).
func BenchmarkResponseFirstSight(b *testing.B) {
	s, req := benchServer(b)
	preq, _ := Decode(req)
	d := s.decider.Decide(context.Background(), preq)
	users := make([]string, 1<<16)
	for i := range users {
		users[i] = fmt.Sprintf("user-%06d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.User = users[i%len(users)]
		if w := s.response(&d); len(w.base) == 0 {
			b.Fatal("no response")
		}
		i++
	}
}
