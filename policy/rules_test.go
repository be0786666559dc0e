package policy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// panicSource is a key source that panics, standing in for any bug below
// Decide.
type panicSource struct{}

func (panicSource) KeySet(context.Context) (*cache.KeySet, error)  { panic("boom") }
func (panicSource) Refetch(context.Context) (*cache.KeySet, error) { panic("boom") }

// TestFailClosedOnPanic: a panic anywhere in a check denies with 503.
func TestFailClosedOnPanic(t *testing.T) {
	eng, demo := engineFor(t, "three-tiers")
	policy.SetSource(eng.Snapshot(), "customers", panicSource{})
	d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{
		"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)}})
	if d.Allow || d.Status != 503 || d.Reason != policy.ReasonInternal || len(d.SetHeaders) != 0 {
		t.Fatalf("panic gave %+v", d)
	}
}

// TestFailClosedOnTimeout: an IdP that never answers, with no key set
// cached, denies 503 when the check's deadline passes.
func TestFailClosedOnTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	env := newTokenEnv(t, "{ uri: "+srv.URL+" }", true)
	k := testkit.RSAKey(t, 2048)
	tok := testkit.Sign(t, k, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d := env.eng.Decide(ctx, policy.Request{Method: "GET", Path: "/", Headers: map[string]string{"authorization": "Bearer " + tok}})
	if d.Allow || d.Status != 503 || d.Reason != policy.ReasonJWKSUnavailable {
		t.Fatalf("got %+v", d)
	}
}

func TestNoSnapshotDenies(t *testing.T) {
	eng := policy.NewEngine(nil, policy.EngineOptions{})
	if d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/"}); d.Allow || d.Status != 503 {
		t.Fatalf("got %+v", d)
	}
}

// TestDenyShape: deny bodies are {error, reason} JSON, 401s carry a
// challenge, and no deny carries headers or any part of a secret.
func TestDenyShape(t *testing.T) {
	eng, demo := engineFor(t, "three-tiers")
	key := demo.Key(t, "acme")
	tok := demo.Token(t, "alice-access", time.Now().Add(-3*time.Hour), time.Hour, nil) // expired
	for _, h := range []map[string]string{
		{"x-api-key": key + "x"},
		{"x-api-key": key, "authorization": "Bearer " + tok},
		{"x-api-key": key, "authorization": tok[:len(tok)-4]},
		{"x-api-key": demo.Key(t, "globex"), "authorization": "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)},
		{},
	} {
		d := eng.Decide(context.Background(), policy.Request{Method: "POST", Path: "/images", Headers: h})
		if d.Allow {
			t.Fatalf("allowed %v", h)
		}
		body := string(d.Body())
		if !strings.HasPrefix(body, `{"error":"`) || !strings.Contains(body, `"reason":"`+string(d.Reason)+`"`) {
			t.Errorf("body %s", body)
		}
		if (d.Status == 401) != (d.Challenge() != "") {
			t.Errorf("status %d challenge %q", d.Status, d.Challenge())
		}
		assertNoSecret(t, d, h)
	}
}

// assertNoSecret fails if any header value sent (a key or a token, or a
// part of one) shows up in the decision or its body.
func assertNoSecret(t *testing.T, d policy.Decision, sent map[string]string) {
	t.Helper()
	all := string(d.Body()) + " " + strings.Join(d.RemoveHeaders, " ") + " " + d.Tenant + d.User + d.Credential + d.Tier + string(d.Reason)
	for _, h := range d.SetHeaders {
		all += " " + h.Value
	}
	for name, v := range sent {
		for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '.' || r == ',' }) {
			if len(part) >= 12 && strings.Contains(all, part) {
				t.Errorf("%s value leaked into the decision: %q", name, part)
			}
		}
	}
}
