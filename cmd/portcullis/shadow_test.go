package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// metricValue returns the value of the metric line starting with series
// ("name{labels}" exactly as exported), or -1 when there is none.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return -1
}

// TestServeShadowPolicy: with --shadow-policy every check is decided by
// both policies, and the answer is always the live one's. Agreements and
// disagreements are counted by both reasons; each disagreement is logged
// with its request id and both decisions, never a secret. The shadow
// policy reloads when its file is replaced (a broken one is refused and
// the last good one keeps deciding), and a broken one at start stops
// serve.
func TestServeShadowPolicy(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	live := filepath.Join(dir, "policy.yaml")
	raw, _ := os.ReadFile(live)
	// Stricter: reading images needs admin.
	stricter := strings.Replace(string(raw), "- { prefix: /images, methods: [GET, HEAD], tier: service }", "- { prefix: /images, methods: [GET, HEAD], tier: admin }", 1)
	shadow := filepath.Join(dir, "shadow.yaml")
	writeAtomic(t, shadow, []byte(stricter))
	p := startServe(t, "--policy", live, "--shadow-policy", shadow)
	demo := testkit.Load(t, "three-tiers")
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	key := demo.Key(t, "acme")
	tok := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	ask := func(method, rid string, h map[string]string) *authv3.CheckResponse {
		t.Helper()
		h["x-request-id"] = rid
		resp, err := c.Check(context.Background(), checkReq(method, "/images/1?api_key="+key, h))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 5 {
		// Live allows (service); the shadow would refuse: the answer is the live one.
		if r := ask("GET", "read-"+strconv.Itoa(i), map[string]string{"x-api-key": key}); r.GetOkResponse() == nil {
			t.Fatalf("the shadow policy changed the answer: %v", r)
		}
		// Both allow as admin.
		if r := ask("POST", "write-"+strconv.Itoa(i), map[string]string{"x-api-key": key, "authorization": "Bearer " + tok}); r.GetOkResponse() == nil {
			t.Fatalf("%v", r)
		}
		// Both refuse.
		ask("GET", "none-"+strconv.Itoa(i), map[string]string{})
	}
	p.waitCount(t, `"msg":"shadow disagreement"`, 5)
	_, metrics := p.get(t, "/metrics")
	for series, want := range map[string]float64{
		`portcullis_shadow_decisions_total{live="allowed",result="differ",shadow="tier_too_low"}`:                5,
		`portcullis_shadow_decisions_total{live="allowed",result="same",shadow="allowed"}`:                       5,
		`portcullis_shadow_decisions_total{live="missing_credential",result="same",shadow="missing_credential"}`: 5,
	} {
		if got := metricValue(metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, l := range strings.Split(p.log(), "\n") {
		if !strings.Contains(l, `"msg":"shadow disagreement"`) {
			continue
		}
		for _, want := range []string{`"request_id":"read-`, `"method":"GET"`, `"path":"/images/1"`, `"live_allow":true`, `"live_reason":"allowed"`,
			`"live_tier":"service"`, `"shadow_allow":false`, `"shadow_reason":"tier_too_low"`} {
			if !strings.Contains(l, want) {
				t.Errorf("disagreement line lacks %s: %s", want, l)
			}
		}
	}
	if strings.Contains(p.log(), key) || strings.Contains(p.log(), tok) {
		t.Error("a key or token is in the log")
	}

	// A broken shadow policy is refused; the last good one keeps deciding.
	writeAtomic(t, shadow, []byte(stricter+"\nbogus: 1\n"))
	p.waitFor(t, msgIs("shadow policy reload failed"))
	ask("GET", "after-broken", map[string]string{"x-api-key": key})
	p.waitFor(t, func(m map[string]any) bool {
		return m["msg"] == "shadow disagreement" && m["request_id"] == "after-broken"
	})
	// The shadow policy made equal to the live one: no more disagreements.
	writeAtomic(t, shadow, raw)
	p.waitFor(t, msgIs("shadow policy reloaded", "changed", true))
	ask("GET", "after-reload", map[string]string{"x-api-key": key})
	_, metrics = p.get(t, "/metrics")
	if got := metricValue(metrics, `portcullis_shadow_decisions_total{live="allowed",result="same",shadow="allowed"}`); got != 6 {
		t.Errorf("after the reload the shadow policy still differs: %v", got)
	}
	if regexp.MustCompile(`"request_id":"after-reload"`).MatchString(p.log()) {
		t.Error("a disagreement after the shadow policy was made equal")
	}
	p.signal(t, syscall.SIGTERM)
	p.waitExit(t)

	// A broken shadow policy at start: serve refuses to start, saying which file.
	writeAtomic(t, shadow, []byte("version: 1\nroutes: []\n"))
	code, _, errOut := runBinary(t, dir, "serve", "--policy", live, "--shadow-policy", shadow, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "loading shadow policy") || !strings.Contains(errOut, "shadow.yaml") {
		t.Fatalf("a broken shadow policy at start: exit %d\n%s", code, errOut)
	}
}
