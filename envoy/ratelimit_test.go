package envoy_test

// This file runs envoy/ratelimit/ (CONTRACT §12) with the real parts: two
// replicas of `portcullis serve` on the self-service example and a
// throwaway PostgreSQL, each behind a real Envoy running the shipped
// envoy/ratelimit/envoy.yaml, both Envoys asking one real rate limit
// service (envoy/ratelimit/config/, as shipped) over one real Redis. One
// set of parts serves every case; each case uses tenants and keys of its
// own, made through the API, so its counters start at zero.
//
// Why nothing here can flake at a window boundary: the service counts in
// windows aligned to the clock (a minute starts at :00), and a test cannot
// choose when it runs. So no assertion guesses the time. Every limited
// answer says, in Envoy's X-RateLimit-Limit and -Remaining, which limit it
// met and what is left of the window; a descriptor only one case uses
// therefore shows a new window as -Remaining back at limit-1 where the
// previous answer's minus one was expected. drain follows those headers:
// it counts the allowed answers of the window in which the 429 comes, and
// asserts that a 429 only ever follows an answer with nothing remaining in
// the same window. Where a case can see either side of a boundary (a plan
// changed while its window runs), it asserts what holds on both sides.
// Limits are never asserted by timing: the rate limit filter's timeout is
// raised for the tests, so a slow answer on a busy machine is waited for
// instead of being let through unlimited (the shipped fail-open choice,
// tested on its own by stopping the service), and so is the check's (a
// 503 would miscount a window).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

// rateLimitDoc reads envoy/ratelimit/envoy.yaml.
func rateLimitDoc(t testing.TB) doc {
	t.Helper()
	return loadDoc(t, filepath.Join(testkit.Root(), "envoy", "ratelimit", "envoy.yaml"))
}

// rateLimitFilter returns the typed_config of d's one ratelimit filter.
func rateLimitFilter(t testing.TB, d doc) map[string]any {
	t.Helper()
	var out []map[string]any
	for _, fs := range httpFilters(d) {
		for _, f := range fs {
			tc, _ := field(obj(f), "typed_config")
			if strings.HasSuffix(fmt.Sprint(obj(tc)["@type"]), "ratelimit.v3.RateLimit") {
				out = append(out, obj(tc))
			}
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d ratelimit filters, want 1", len(out))
	}
	return out[0]
}

// ---------------------------------------------------------------------------
// replicas and their API

// rlReplica is one `portcullis serve` of the self-service example with its
// key-management API.
type rlReplica struct {
	*portcullis
	keysAPI string
	demo    *testkit.Demo
}

// startReplicaFor starts a replica on the database PORTCULLIS_DATABASE_URL
// names and waits until it is ready (every key and tenant loaded).
func startReplicaFor(t *testing.T, d *testkit.Demo) *rlReplica {
	t.Helper()
	p := startPortcullis(t, "--policy", d.Policy(), "--keys-api-addr", "127.0.0.1:0", "--usage-flush", "200ms")
	r := &rlReplica{portcullis: p, demo: d}
	r.keysAPI, _ = p.waitLog(t, msgIs("portcullis serving"))["keys_api_addr"].(string)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := r.get(t, "http://"+p.adminAddr+"/readyz"); code == 200 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica was not ready after 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rlReplica) get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call makes one key-API call with the platform's management token and
// returns the decoded answer; any other status than want fails the test.
func (r *rlReplica) call(t testing.TB, method, path string, body any, want int) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://"+r.keysAPI+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.demo.ManagementTokens["console"])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	return out
}

// version is the latest change the replica applied (GET /v1/status).
func (r *rlReplica) version(t testing.TB) float64 {
	t.Helper()
	code, body := r.get(t, "http://"+r.keysAPI+"/v1/status")
	var st struct{ Version float64 }
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/v1/status: %d %s", code, body)
	}
	return st.Version
}

// applied waits until every replica applies the change an answer of the
// API returned (CONTRACT §7: a replica whose version is at least the
// change's applies it to every check).
func applied(t *testing.T, change map[string]any, replicas ...*rlReplica) {
	t.Helper()
	v, ok := change["version"].(float64)
	if !ok {
		t.Fatalf("the answer holds no version: %v", change)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range replicas {
		for r.version(t) < v {
			if time.Now().After(deadline) {
				t.Fatalf("a replica did not apply version %v in 30 s", v)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

var checksLine = regexp.MustCompile(`^portcullis_checks_total\{(.*)\} (\S+)$`)

// decisions sums the replica's portcullis_checks_total by result (allow,
// deny): what Portcullis counted as its own decisions.
func (r *rlReplica) decisions(t testing.TB) map[string]int {
	t.Helper()
	code, body := r.get(t, "http://"+r.adminAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := checksLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.ParseFloat(m[2], 64)
		for _, kv := range strings.Split(m[1], ",") {
			if k, v, _ := strings.Cut(kv, "="); k == "result" {
				out[strings.Trim(v, `"`)] += int(n)
			}
		}
	}
	return out
}

// newKey makes a key through the API for tenant (no user: a customer's
// service key, which depends on no membership), with its own rate limit
// when limit is not nil, and returns its id and plaintext once every
// replica holds it.
func newKey(t *testing.T, api *rlReplica, tenant string, limit map[string]any, all ...*rlReplica) (id, key string) {
	t.Helper()
	body := map[string]any{"label": "rate limits", "tier": "service", "tenant": tenant}
	if limit != nil {
		body["rate_limit"] = limit
	}
	k := api.call(t, "POST", "/v1/keys", body, 201)
	applied(t, k, all...)
	return k["id"].(string), k["key"].(string)
}

// newTenant makes a store tenant through the API, on plan ("": the
// policy's default_plan), once every replica holds it.
func newTenant(t *testing.T, api *rlReplica, id, plan string, all ...*rlReplica) {
	t.Helper()
	body := map[string]any{"display_name": id}
	if plan != "" {
		body["plan"] = plan
	}
	applied(t, api.call(t, "PUT", "/v1/tenants/"+id, body, 201), all...)
}

// ---------------------------------------------------------------------------
// answers through the rate limiting Envoy

// limited is one answer through envoy/ratelimit/envoy.yaml, with the rate
// limit headers Envoy added (DRAFT_VERSION_03): X-RateLimit-Limit
// "60, 60;w=60" (the limit met, and its window in seconds),
// X-RateLimit-Remaining, X-RateLimit-Reset (seconds to the window's end).
type limited struct {
	answer
	limit, window, remaining, reset int // -1 when the header is absent
}

func (l limited) String() string {
	return fmt.Sprintf("%d (limit %d/%ds, remaining %d, reset %d s) %s", l.status, l.limit, l.window, l.remaining, l.reset, l.body)
}

var limitHeader = regexp.MustCompile(`^(\d+), (\d+);w=(\d+)$`)

func readLimited(t testing.TB, a answer) limited {
	t.Helper()
	l := limited{answer: a, limit: -1, window: -1, remaining: -1, reset: -1}
	if v := a.header.Get("X-RateLimit-Limit"); v != "" {
		m := limitHeader.FindStringSubmatch(v)
		if m == nil || m[1] != m[2] {
			t.Fatalf("X-RateLimit-Limit %q: want \"N, N;w=S\"", v)
		}
		l.limit, _ = strconv.Atoi(m[1])
		l.window, _ = strconv.Atoi(m[3])
	}
	for _, h := range []struct {
		name string
		to   *int
	}{{"X-RateLimit-Remaining", &l.remaining}, {"X-RateLimit-Reset", &l.reset}} {
		if v := a.header.Get(h.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s %q", h.name, v)
			}
			*h.to = n
		}
	}
	return l
}

// get sends GET /v1/models with key through the Envoy at addr.
func get(t testing.TB, addr, key string, headers ...string) limited {
	t.Helper()
	return readLimited(t, send(t, addr, "GET", "/v1/models", "", append([]string{"authorization", "Bearer " + key}, headers...)...))
}

// windowSeconds is the length of a unit's window.
var windowSeconds = map[string]int{"second": 1, "minute": 60, "hour": 3600}

// drain sends requests (next(i) sends the i-th) on one descriptor no other
// request uses until the rate limiter answers 429, and returns that 429.
// Every answer must carry limit (per unit); the allowed answers of the
// window in which the 429 comes must number exactly limit. It cannot be
// fooled by a window boundary: within a window -Remaining falls by one per
// request, and a new window shows limit-1 after its first request, so each
// answer is placed in its window by the headers alone; a 429 is accepted
// only right after an answer with 0 remaining.
func drain(t *testing.T, limit int, unit string, next func(i int) limited) limited {
	t.Helper()
	inWindow, prev := 0, -1
	for i := 0; i < 3*limit+3; i++ {
		a := next(i)
		if a.limit != limit || a.window != windowSeconds[unit] {
			t.Fatalf("request %d: %v, want the limit %d per %s", i, a, limit, unit)
		}
		switch a.status {
		case http.StatusOK:
			switch a.remaining {
			case prev - 1:
				inWindow++
			case limit - 1: // the first request of a window
				inWindow = 1
			default:
				t.Fatalf("request %d: %v after %d remaining: neither the same window nor a new one", i, a, prev)
			}
			prev = a.remaining
		case http.StatusTooManyRequests:
			if prev != 0 || a.remaining != 0 {
				t.Fatalf("request %d: %v after %d remaining", i, a, prev)
			}
			if inWindow != limit {
				t.Fatalf("%d requests allowed in the window, want %d", inWindow, limit)
			}
			return a
		default:
			t.Fatalf("request %d: %v", i, a)
		}
	}
	t.Fatalf("no 429 after %d requests", 3*limit+3)
	return limited{}
}

// check429 checks a 429 of the rate limiter: Envoy's own answer (never
// Portcullis's deny body), with X-RateLimit-* and Retry-After, and
// x-envoy-ratelimited.
func check429(t *testing.T, a limited, unit string) {
	t.Helper()
	if a.reset < 0 || a.reset > windowSeconds[unit] {
		t.Errorf("X-RateLimit-Reset %d, want 0–%d s", a.reset, windowSeconds[unit])
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra > windowSeconds[unit] {
		t.Errorf("Retry-After %q, want 1–%d s", a.header.Get("Retry-After"), windowSeconds[unit])
	}
	if a.header.Get("X-Envoy-Ratelimited") != "true" {
		t.Errorf("x-envoy-ratelimited %q", a.header.Get("X-Envoy-Ratelimited"))
	}
	if strings.Contains(string(a.body), "reason") {
		t.Errorf("a 429 of the rate limiter with a body like Portcullis's deny: %s", a.body)
	}
}

// rlAccess is a line of envoy/ratelimit/envoy.yaml's access log.
type rlAccess struct {
	accessEntry
	Plan     string `json:"plan"`
	LimitKey string `json:"limit_key"`
}

// accessLine waits for the access log line of a request matching match.
func accessLine(t *testing.T, e *envoy, match func(rlAccess) bool) rlAccess {
	t.Helper()
	var got rlAccess
	_, err := e.WaitAccessLogLine(func(l string) bool {
		var a rlAccess
		if json.Unmarshal([]byte(l), &a) == nil && match(a) {
			got = a
			return true
		}
		return false
	}, 30*time.Second)
	if err != nil {
		t.Fatalf("%v; the log:\n%s", err, tail(e.Stdout(), 4096))
	}
	return got
}

// ---------------------------------------------------------------------------
// the test

// rlRig is the parts every case shares.
type rlRig struct {
	demo   *testkit.Demo
	a, b   *rlReplica
	ea, eb *envoy // Envoy in front of a, of b
	addrA  string // their listeners
	addrB  string
	up     *upstream
	rls    *rateLimitService
}

// startRateLimitEnvoy runs envoy/ratelimit/envoy.yaml in front of up, with
// replica p as its authorization server and rls as its rate limit
// service, the rate limit filter's timeout raised (see the top of the
// file) and edit applied.
func startRateLimitEnvoy(t *testing.T, p *rlReplica, up *upstream, rls *rateLimitService, edit func(doc)) (*envoy, string) {
	t.Helper()
	d := rateLimitDoc(t)
	rateLimitFilter(t, d)["timeout"] = "30s"
	// The check's timeout too: a 503 from a check slowed by a busy machine
	// would miscount a window (envoy.yaml's own tests cover that timeout).
	ea := extAuthzConfigs(d)
	if len(ea) != 1 {
		t.Fatalf("%d ext_authz filters", len(ea))
	}
	gs := obj(path(ea[0], "grpc_service"))
	gs["timeout"] = "30s"
	if bo := obj(path(gs, "retry_policy", "retry_back_off")); bo != nil {
		bo["max_interval"] = "30s" // each try's timeout, to Envoy
	}
	if edit != nil {
		edit(d)
	}
	d = rewriteAddresses(t, d, map[string][]endpoint{
		"portcullis": tcp(p.grpcAddr),
		"api":        tcp(up.addr()),
		"ratelimit":  unixSockets(rls.sock),
	})
	e := startEnvoy(t, d)
	return e, e.listener(t, "ingress")
}

// TestRateLimits: plans and per-key limits through envoy/ratelimit/ with
// the real Envoy, rate limit service, Redis, PostgreSQL and two replicas.
func TestRateLimits(t *testing.T) {
	envoyBinary(t)
	redis := startRedis(t)
	rls := startRateLimitService(t, redis)
	t.Setenv("PORTCULLIS_DATABASE_URL", testkit.NewPostgreSQL(t).Database(t))
	r := &rlRig{demo: testkit.Load(t, "self-service"), up: newUpstream(t), rls: rls}
	r.a = startReplicaFor(t, r.demo)
	r.b = startReplicaFor(t, r.demo)
	r.ea, r.addrA = startRateLimitEnvoy(t, r.a, r.up, rls, nil)
	r.eb, r.addrB = startRateLimitEnvoy(t, r.b, r.up, rls, nil)

	t.Run("two plans through one route rule", r.twoPlans)
	t.Run("a policy tenant's plan, and the default plan of a personal context", r.policyPlans)
	t.Run("a key's own limit beats the plan", r.keyLimits)
	t.Run("a plan changed through the API applies on every replica", r.planChange)
	// Last: it stops the rate limit service.
	t.Run("the rate limit service down", r.serviceDown)
}

// twoPlans: two tenants on different plans, one route rule: the free
// tenant's callers share 60 a minute and then get Envoy's 429 with
// RateLimit headers; the pro tenant, on its own counter, is untouched by
// that and meets 6000. Portcullis counted every one of those requests as
// an allow, the over-limit ones too, and the key's usage shows no deny;
// nothing over the limit reached the upstream; denies never used quota.
func (r *rlRig) twoPlans(t *testing.T) {
	newTenant(t, r.a, "rl-free", "", r.a, r.b)
	newTenant(t, r.a, "rl-pro", "pro", r.a, r.b)
	freeID, free1 := newKey(t, r.a, "rl-free", nil, r.a, r.b)
	_, free2 := newKey(t, r.a, "rl-free", nil, r.a, r.b)
	_, pro := newKey(t, r.a, "rl-pro", nil, r.a, r.b)

	before, upBefore := r.a.decisions(t), r.up.count()
	// sent counts the requests through Envoy A, allowed those it let
	// through, byFree1 those of the key whose usage is checked below.
	var sent, allowed, byFree1 int
	through := func(key string) limited {
		a := get(t, r.addrA, key)
		sent++
		if a.status == 200 {
			allowed++
		}
		if key == free1 {
			byFree1++
		}
		return a
	}
	// Two keys of one tenant, taking turns: one counter for the tenant.
	over := drain(t, 60, "minute", func(i int) limited {
		if i%2 == 1 {
			return through(free2)
		}
		return through(free1)
	})
	check429(t, over, "minute")
	// The other key at once: the tenant's quota is spent, not a key's (or,
	// past a boundary, this is the first request of a new window).
	if a := through(free1); a.status != 429 && a.remaining != 59 {
		t.Errorf("the tenant's other key after the 429: %v", a)
	}
	// The pro tenant: its own counter, untouched by the free tenant's.
	if a := through(pro); a.status != 200 || a.limit != 6000 || a.window != 60 || a.remaining != 5999 {
		t.Errorf("the pro tenant: %v, want 200 with 6000 a minute, 5999 remaining", a)
	}

	// Denied requests never reach the rate limiter: a service key may not
	// write, and the pro tenant's remaining is unchanged by three denies.
	for range 3 {
		if a := send(t, r.addrA, "POST", "/v1/models", "{}", "authorization", "Bearer "+pro); a.status != 403 {
			t.Fatalf("a write with a service key: %d %s", a.status, a.body)
		}
	}
	if a := through(pro); a.status != 200 || a.remaining != 5998 && a.remaining != 5999 {
		t.Errorf("after three denies: %v, want 5998 remaining (5999 in a new window)", a)
	}

	// Portcullis allowed every request, the 429s included: the rate
	// limiter's refusals are Envoy's, never Portcullis's denies.
	after := r.a.decisions(t)
	if got := after["allow"] - before["allow"]; got != sent {
		t.Errorf("Portcullis counted %d allows, want %d (every request sent but the 3 writes)", got, sent)
	}
	if got := after["deny"] - before["deny"]; got != 3 {
		t.Errorf("Portcullis counted %d denies, want the 3 writes", got)
	}
	if got := r.up.count() - upBefore; got != allowed {
		t.Errorf("%d requests reached the upstream, want the %d the rate limiter allowed", got, allowed)
	}
	l := accessLine(t, r.ea, func(a rlAccess) bool { return a.Status == 429 && a.Tenant == "rl-free" })
	if !strings.Contains(l.Flags, "RL") || l.Plan != "free" || l.LimitKey != "*" || l.Reason != "allowed" {
		t.Errorf("the access log of a 429: %+v, want flag RL, plan free, limit key *, Portcullis's reason allowed", l)
	}
	// The key's usage (summed over replicas): every request allowed, none
	// denied, once the replicas flushed (every 200 ms here).
	want := byFree1
	deadline := time.Now().Add(30 * time.Second)
	for {
		u := r.a.call(t, "GET", "/v1/keys/"+freeID+"/usage", nil, 200)
		if u["allowed"] == float64(want) {
			if u["denied"] != float64(0) {
				t.Errorf("usage of a key whose requests met the limit: %v, want no denied", u)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage %v, want %d allowed", u, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// policyPlans: org-acme is on pro in the policy; a user's personal context
// has no plan of its own and is on the default (free), counted under the
// user's id.
func (r *rlRig) policyPlans(t *testing.T) {
	k := r.a.call(t, "POST", "/v1/keys", map[string]any{"label": "alice", "tier": "service", "user": "u-alice"}, 201)
	applied(t, k, r.a, r.b)
	key := k["key"].(string)
	if a := get(t, r.addrB, key, "ib-context", "org-acme"); a.status != 200 || a.limit != 6000 {
		t.Errorf("acting for org-acme: %v, want its policy plan pro (6000)", a)
	}
	if a := get(t, r.addrB, key); a.status != 200 || a.limit != 60 || a.remaining != 59 {
		t.Errorf("her personal context: %v, want the default plan free (60), 59 remaining", a)
	}
	l := accessLine(t, r.eb, func(a rlAccess) bool { return a.Key == k["id"] && a.TenantKind == "personal" })
	if l.Tenant != "u-alice" || l.Plan != "free" || l.LimitKey != "*" {
		t.Errorf("the access log: %+v", l)
	}
}

// keyLimits: a key's own limit is counted on its own and replaces the
// plan, below it (3 a minute) or above it (100 a minute, more than the
// free plan's 60); the tenant's other keys keep the plan's counter; the
// counter is the rate limit service's, shared by every Envoy; a key's
// limit removed through the API puts it back on the plan, on every
// replica.
func (r *rlRig) keyLimits(t *testing.T) {
	newTenant(t, r.a, "rl-keys", "", r.a, r.b)
	slowID, slow := newKey(t, r.a, "rl-keys", map[string]any{"requests_per_unit": 3, "unit": "minute"}, r.a, r.b)
	_, fast := newKey(t, r.a, "rl-keys", map[string]any{"requests_per_unit": 100, "unit": "minute"}, r.a, r.b)
	_, plain := newKey(t, r.a, "rl-keys", nil, r.a, r.b)

	check429(t, drain(t, 3, "minute", func(int) limited { return get(t, r.addrA, slow) }), "minute")
	// Through the other Envoy and replica: the same counter.
	if a := get(t, r.addrB, slow); a.limit != 3 || a.status != 429 && a.remaining != 2 {
		t.Errorf("the slow key through the other Envoy: %v, want 429 (or 2 remaining in a new window)", a)
	}
	// The tenant's plan counter is untouched by the slow key's requests.
	if a := get(t, r.addrA, plain); a.status != 200 || a.limit != 60 || a.remaining != 59 {
		t.Errorf("a key on the plan: %v, want 60 a minute, 59 remaining", a)
	}
	l := accessLine(t, r.ea, func(a rlAccess) bool { return a.Key == slowID && a.Status == 429 })
	if l.LimitKey != slowID || l.Plan != "free" {
		t.Errorf("the access log of the slow key's 429: %+v, want limit key %s", l, slowID)
	}
	// Above the plan: 61 requests, more than the free plan's 60 in any
	// window, all allowed (a boundary only ever resets a counter).
	for i := range 61 {
		if a := get(t, r.addrA, fast); a.status != 200 || a.limit != 100 {
			t.Fatalf("request %d of a key allowed 100 a minute: %v", i, a)
		}
	}
	// Its limit removed: the plan again, on both replicas.
	applied(t, r.a.call(t, "PATCH", "/v1/keys/"+slowID, map[string]any{"rate_limit": nil}, 200), r.a, r.b)
	for _, addr := range []string{r.addrA, r.addrB} {
		if a := get(t, addr, slow); a.status != 200 || a.limit != 60 {
			t.Errorf("the slow key without its own limit: %v, want 200 on the plan's 60", a)
		}
	}
}

// planChange: a tenant that met its free plan's limit is moved to pro
// through one replica's API; as soon as each replica reports the change's
// version, requests through both Envoys meet 6000 and pass: the new limit
// applies from the next request, not only from the next window (the
// window's count is kept, and is under 6000). Moved back to the default
// plan, both meet 60 at once: a 429 while the window that counted the
// drain runs, or, past a boundary, a new window counted against 60.
func (r *rlRig) planChange(t *testing.T) {
	newTenant(t, r.a, "rl-change", "", r.a, r.b)
	_, key := newKey(t, r.a, "rl-change", nil, r.a, r.b)
	drain(t, 60, "minute", func(int) limited { return get(t, r.addrA, key) })

	applied(t, r.a.call(t, "PUT", "/v1/tenants/rl-change", map[string]any{"plan": "pro"}, 200), r.a, r.b)
	for _, addr := range []string{r.addrA, r.addrB} {
		if a := get(t, addr, key); a.status != 200 || a.limit != 6000 {
			t.Errorf("on pro: %v, want 200 under 6000 a minute", a)
		}
	}
	applied(t, r.a.call(t, "PUT", "/v1/tenants/rl-change", map[string]any{"plan": ""}, 200), r.a, r.b)
	for _, addr := range []string{r.addrA, r.addrB} {
		a := get(t, addr, key)
		// The window that counted the drain's 61 requests refuses; a window
		// that began since counted at most the 4 requests sent after the
		// drain (2 on pro, 2 here), so at least 56 remain in it.
		if a.limit != 60 || !(a.status == 429 && a.remaining == 0 || a.status == 200 && a.remaining >= 56) {
			t.Errorf("back on free: %v, want 60 a minute: a 429, or a new window", a)
		}
	}
}

// serviceDown: with the rate limit service stopped, Portcullis decides as
// before: the shipped failure_mode_deny: false lets allowed requests
// through unlimited (counted by Envoy as failure_mode_allowed) and
// Portcullis's denies stay its denies; with failure_mode_deny: true, Envoy
// refuses allowed requests itself (500, flag RLSE), and Portcullis still
// counted them as allows.
func (r *rlRig) serviceDown(t *testing.T) {
	newTenant(t, r.a, "rl-down", "", r.a, r.b)
	_, key := newKey(t, r.a, "rl-down", nil, r.a, r.b)
	strict, strictAddr := startRateLimitEnvoy(t, r.a, r.up, r.rls, func(d doc) { rateLimitFilter(t, d)["failure_mode_deny"] = true })
	if a := get(t, strictAddr, key); a.status != 200 || a.limit != 60 {
		t.Fatalf("with the service up: %v", a)
	}
	r.rls.kill()

	before := r.a.decisions(t)
	allowed := r.ea.stat(t, "cluster.api.ratelimit.failure_mode_allowed")
	for i := range 3 {
		if a := get(t, r.addrA, key); a.status != 200 || a.limit != -1 {
			t.Errorf("request %d with the service down: %v, want 200 without rate limit headers", i, a)
		}
	}
	if got := r.ea.stat(t, "cluster.api.ratelimit.failure_mode_allowed") - allowed; got != 3 {
		t.Errorf("cluster.api.ratelimit.failure_mode_allowed grew by %d, want 3", got)
	}
	bad := send(t, r.addrA, "GET", "/v1/models", "", "authorization", "Bearer pk_live_not_a_key")
	var body map[string]string
	if bad.status != 401 || json.Unmarshal(bad.body, &body) != nil || body["reason"] != "invalid_api_key" {
		t.Errorf("an unknown key with the service down: %d %s, want Portcullis's 401 invalid_api_key", bad.status, bad.body)
	}
	a := get(t, strictAddr, key)
	if a.status != 500 {
		t.Errorf("failure_mode_deny: true with the service down: %v, want 500", a)
	}
	if l := accessLine(t, strict, func(a rlAccess) bool { return a.Status == 500 }); !strings.Contains(l.Flags, "RLSE") || l.Reason != "allowed" {
		t.Errorf("the access log of its 500: %+v, want flag RLSE after Portcullis's allow", l)
	}
	after := r.a.decisions(t)
	if after["allow"]-before["allow"] != 4 || after["deny"]-before["deny"] != 1 {
		t.Errorf("Portcullis counted %d allows and %d denies, want 4 and 1", after["allow"]-before["allow"], after["deny"]-before["deny"])
	}
}
