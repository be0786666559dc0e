package policy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
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
	if d.Allow || d.Status() != 503 || d.Reason != reason.Internal || len(d.SetHeaders) != 0 {
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
	if d.Allow || d.Status() != 503 || d.Reason != reason.JWKSUnavailable {
		t.Fatalf("got %+v", d)
	}
}

func TestNoSnapshotDenies(t *testing.T) {
	eng := policy.NewEngine(nil, policy.EngineOptions{})
	if d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/"}); d.Allow || d.Status() != 503 {
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
		if (d.Status() == 401) != (d.Challenge() != "") {
			t.Errorf("status %d challenge %q", d.Status(), d.Challenge())
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

// TestTwoContextHeaders: two context headers naming the same tenant are
// fine; naming two different tenants is a 403, never a silent pick.
func TestTwoContextHeaders(t *testing.T) {
	demo := testkit.Load(t, "requester-uid")
	b, err := os.ReadFile(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "  - { header: instill-requester-uid }", "  - { header: instill-requester-uid }\n  - { header: ib-context }", 1)
	keys, _ := os.ReadFile(filepath.Join(demo.Dir, "keys.yaml"))
	s, err := loadString(t, y, map[string]string{"keys.yaml": string(keys)})
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(s, policy.EngineOptions{})
	auth := "Bearer " + demo.Key(t, "alice")
	for _, tc := range []struct {
		a, b   string
		status int
		reason reason.Code
		tenant string
	}{
		{"org-acme", "org-acme", 200, reason.Allowed, "org-acme"},
		{"org-acme", "", 200, reason.Allowed, "org-acme"},
		{"", "org-globex", 200, reason.Allowed, "org-globex"},
		{"org-acme", "org-globex", 403, reason.ContextConflict, ""},
		{"u-alice", "org-acme", 403, reason.ContextConflict, ""},
	} {
		d := eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/v1/x", Headers: map[string]string{
			"authorization": auth, "instill-requester-uid": tc.a, "ib-context": tc.b}})
		if d.Status() != tc.status || d.Reason != tc.reason || d.Tenant != tc.tenant {
			t.Errorf("%q + %q: %d %s %q, want %d %s %q", tc.a, tc.b, d.Status(), d.Reason, d.Tenant, tc.status, tc.reason, tc.tenant)
		}
		if d.Allow && (!slices.Contains(d.RemoveHeaders, "ib-context") || !slices.Contains(d.RemoveHeaders, "instill-requester-uid")) {
			t.Errorf("context headers not both removed: %v", d.RemoveHeaders)
		}
	}
}

// TestOversizedTokenBeforeCrypto: a token over the size limit is refused
// before its issuer's keys are even looked up (the IdP here never answers,
// so any look-up would show as a 503).
func TestOversizedTokenBeforeCrypto(t *testing.T) {
	idp := testkit.NewIdP(t, nil)
	idp.Set(nil, true)
	env := newTokenEnv(t, uriJWKS(idp), true)
	k := testkit.RSAKey(t, 2048)
	big := testkit.Sign(t, k, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", map[string]any{"pad": strings.Repeat("x", 8192)}))
	wantDeny(t, env.decide(big), 401, reason.TokenTooLarge)
	small := testkit.Sign(t, k, "RS256", map[string]any{"kid": "k"}, claims("https://idp.example", nil))
	wantDeny(t, env.decide(small), 503, reason.JWKSUnavailable)
}
