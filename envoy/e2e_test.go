package envoy_test

// This file runs every credential convention of examples/ through the real
// Envoy with each shipped front-proxy configuration (ext_authz over gRPC,
// envoy.yaml; over HTTP, http-service.yaml), the real portcullis serve
// behind it and an echo upstream after it: what the upstream receives on
// allow, what the client receives on deny, the decision id, the access log
// line, and the spoofed headers that must never arrive.

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// normalized are the headers Portcullis sets or removes on every allow
// (CONTRACT §3), each sent by every test client with a forged value.
var normalized = []string{"x-tenant-id", "x-tenant-kind", "x-user-id", "x-auth-tier", "x-credential-id"}

// familyHeaders are every header a forward-auth server might take the
// checked request from, or that describes a forwarded request (the
// forward-auth acceptance's list), each aiming at another request. A client
// sends all of them with every request; none may reach the upstream with
// the client's value, nor change a decision.
var familyHeaders = [][2]string{
	{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Host", "evil.example"},
	{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Prefix", "/healthz"},
	{"X-Original-URI", "/healthz"}, {"X-Original-URL", "http://evil.example/healthz"}, {"X-Original-Method", "GET"},
	{"X-Original-Host", "evil.example"}, {"X-Envoy-Original-Path", "/healthz"}, {"Forwarded", "for=1.2.3.4;host=evil.example;proto=https"},
}

// exchange is one request through Envoy and what must come of it.
type exchange struct {
	name                 string
	method, target, body string
	headers              []string // name, value, …; values may hold key:<id> and token:<name> (testkit)
	// On allow (status 200): each normalized header's value at the upstream
	// ("" or missing: absent).
	want map[string]string
	// On deny: the status and reason the client receives.
	status int
	reason string
}

// convention is one example policy and its exchanges.
type convention struct {
	example     string
	context     []string // the policy's context headers: removed on every allow
	credentials []string // its credential headers: removed on allow (strip_credentials)
	cases       []exchange
}

func org(tenant, tier, user, key string) map[string]string {
	return map[string]string{"x-tenant-id": tenant, "x-tenant-kind": "organization", "x-auth-tier": tier, "x-user-id": user, "x-credential-id": key}
}

func personal(user, tier, key string) map[string]string {
	return map[string]string{"x-tenant-id": user, "x-tenant-kind": "personal", "x-auth-tier": tier, "x-user-id": user, "x-credential-id": key}
}

// conventions are the five of examples/ (CONTRACT §4), each with its
// allowed tiers and contexts and its denies.
var conventions = []convention{
	{example: "three-tiers", context: []string{"x-selected-customer"}, credentials: []string{"x-api-key", "authorization"}, cases: []exchange{
		{name: "service read", method: "GET", target: "/images/7?size=2", headers: []string{"x-api-key", "key:acme", "authorization", "None"},
			want: org("acme", "service", "", "acme")},
		{name: "admin write with an access token", method: "POST", target: "/images", body: `{"name":"cat.png"}`,
			headers: []string{"x-api-key", "key:acme", "authorization", "Bearer token:alice-access", "content-type", "application/json"},
			want:    org("acme", "admin", "alice@acme.com", "acme")},
		{name: "admin with a raw id token", method: "PUT", target: "/collections/3", body: "renamed",
			headers: []string{"x-api-key", "key:acme", "authorization", "token:alice-id"}, want: org("acme", "admin", "alice@acme.com", "acme")},
		{name: "superuser acting for globex", method: "DELETE", target: "/predictors/p1",
			headers: []string{"x-api-key", "key:root", "authorization", "Bearer token:root-access", "x-selected-customer", "globex"},
			want:    org("globex", "superuser", "root@portcullis.example", "root")},
		{name: "service cannot write", method: "POST", target: "/images", body: "x", headers: []string{"x-api-key", "key:acme"}, status: 403, reason: "tier_too_low"},
		{name: "no credential", method: "GET", target: "/images", status: 401, reason: "missing_credential"},
		{name: "unknown key", method: "GET", target: "/images", headers: []string{"x-api-key", "pk_nobody_0000000000000000000000000000"}, status: 401, reason: "invalid_api_key"},
		{name: "another tenant's token", method: "GET", target: "/images",
			headers: []string{"x-api-key", "key:globex", "authorization", "Bearer token:alice-access"}, status: 403, reason: "tenant_mismatch"},
		{name: "context header from a customer", method: "GET", target: "/images",
			headers: []string{"x-api-key", "key:acme", "x-selected-customer", "acme"}, status: 403, reason: "context_not_allowed"},
		{name: "non-canonical path", method: "GET", target: "/images;v=1", headers: []string{"x-api-key", "key:acme"}, status: 400, reason: "bad_path"},
	}},
	{example: "ib-context", context: []string{"ib-context"}, credentials: []string{"authorization"}, cases: []exchange{
		{name: "personal context", method: "GET", target: "/v1/models", headers: []string{"authorization", "Bearer key:alice"},
			want: personal("u-alice", "admin", "alice")},
		{name: "acting for her organization", method: "PUT", target: "/v1/models/1", body: "{}",
			headers: []string{"authorization", "Bearer key:alice", "ib-context", "org-acme"},
			want:    org("org-acme", "admin", "u-alice", "alice")},
		{name: "an organization he is not in", method: "GET", target: "/v1/models",
			headers: []string{"authorization", "Bearer key:bob", "ib-context", "org-acme"}, status: 403, reason: "tenant_not_allowed"},
		{name: "a service key cannot write", method: "POST", target: "/v1/models", body: "{}", headers: []string{"authorization", "Bearer key:bob"}, status: 403, reason: "tier_too_low"},
		{name: "no credential", method: "GET", target: "/v1/models", status: 401, reason: "missing_credential"},
	}},
	{example: "requester-uid", context: []string{"instill-requester-uid"}, credentials: []string{"authorization"}, cases: []exchange{
		{name: "personal context", method: "GET", target: "/v1/pipelines", headers: []string{"authorization", "Bearer key:alice"},
			want: personal("u-alice", "admin", "alice")},
		{name: "acting for an organization", method: "POST", target: "/v1/pipelines", body: `{"id":"p"}`,
			headers: []string{"authorization", "Bearer key:alice", "instill-requester-uid", "org-globex"},
			want:    org("org-globex", "admin", "u-alice", "alice")},
		{name: "an organization he is not in", method: "GET", target: "/v1/pipelines",
			headers: []string{"authorization", "Bearer key:bob", "instill-requester-uid", "org-globex"}, status: 403, reason: "tenant_not_allowed"},
	}},
	{example: "bearer-key", credentials: []string{"authorization"}, cases: []exchange{
		{name: "a key, scheme in capitals", method: "GET", target: "/api/things?page=2", headers: []string{"authorization", "BEARER key:app"},
			want: org("app", "service", "", "app")},
		{name: "a disabled key", method: "GET", target: "/api/things", headers: []string{"authorization", "Bearer key:revoked"}, status: 401, reason: "key_disabled"},
		{name: "no route", method: "GET", target: "/admin", headers: []string{"authorization", "Bearer key:app"}, status: 403, reason: "no_route"},
	}},
	{example: "workspace-token", credentials: []string{"rime-api-key"}, cases: []exchange{
		{name: "a workspace token", method: "POST", target: "/v1/tts", body: `{"text":"hello"}`,
			headers: []string{"rime-api-key", "key:ws1-alice", "content-type", "application/json"},
			want:    org("workspace-1", "service", "alice", "ws1-alice")},
		{name: "an expired token", method: "GET", target: "/v1/voices", headers: []string{"rime-api-key", "key:expired"}, status: 401, reason: "key_expired"},
	}},
}

// shipped names a shipped front-proxy configuration and the cluster its
// ext_authz filter calls.
type shipped struct{ file, transport string }

var frontProxies = []shipped{{"envoy.yaml", "grpc"}, {"http-service.yaml", "http"}}

// stack is one Envoy in front of an upstream, with Portcullis as its
// authorization server.
type stack struct {
	envoy     *envoy
	addr      string // Envoy's listener
	up        *upstream
	pc        *portcullis
	transport string // grpc or http: how Envoy asks Portcullis
	// others is set for configurations others wrote (or Istio generates):
	// they neither clear the forward-auth families nor write the shipped
	// access log, so those two are not asserted.
	others bool
}

// serveExample starts portcullis serve on an example's policy, with the
// forward-auth listener in envoy mode under /authz (http-service.yaml's
// path_prefix) beside gRPC.
func serveExample(t *testing.T, policy string, extra ...string) *portcullis {
	t.Helper()
	return startPortcullis(t, append([]string{"--policy", policy, "--http-addr", "127.0.0.1:0", "--http-mode", "envoy", "--http-path-prefix", "/authz"}, extra...)...)
}

// shippedDoc reads envoy/<file>.
func shippedDoc(t testing.TB, file string) doc {
	t.Helper()
	return loadDoc(t, filepath.Join(testkit.Root(), "envoy", file))
}

// startStack runs the configuration d (a shipped front proxy, possibly
// edited) with its addresses pointed at p and up.
func startStack(t *testing.T, s shipped, d doc, p *portcullis, up *upstream) *stack {
	t.Helper()
	d = rewriteAddresses(t, d, map[string][]endpoint{
		"portcullis":      tcp(p.grpcAddr),
		"portcullis_http": {{Addr: p.httpAddr, HealthCheck: p.adminAddr}},
		"api":             tcp(up.addr()),
	})
	e := startEnvoy(t, d)
	return &stack{envoy: e, addr: e.listener(t, "ingress"), up: up, pc: p, transport: s.transport}
}

// reporter is where an assertion reports: the test itself, or a recorder
// when a test proves that an assertion catches a broken configuration.
type reporter interface {
	Errorf(format string, args ...any)
}

// recorder is a reporter that keeps what it was told.
type recorder struct{ errs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestEnvoyConventions: every convention through both shipped front
// proxies. On allow, the upstream receives the method, path, query and
// body the client sent, the normalized headers Portcullis set, and none of
// the client's forged normalized headers, context headers, credentials or
// forward-auth family headers; on deny the client receives the status,
// the JSON body with reason and id (the request id Envoy made), and
// WWW-Authenticate on a 401, and nothing reaches the upstream; the access
// log line the configuration writes carries the identity and reason.
func TestEnvoyConventions(t *testing.T) {
	envoyBinary(t)
	for _, c := range conventions {
		t.Run(c.example, func(t *testing.T) {
			d := testkit.Load(t, c.example)
			p := serveExample(t, d.Policy())
			up := newUpstream(t)
			for _, s := range frontProxies {
				t.Run(s.file, func(t *testing.T) {
					st := startStack(t, s, shippedDoc(t, s.file), p, up)
					for _, x := range c.cases {
						t.Run(x.name, func(t *testing.T) {
							st.exchange(t, t, d, c, x)
						})
					}
				})
			}
		})
	}
}

// exchange sends x through the stack, with every normalized header and
// every forward-auth family header forged, and checks what the client, the
// upstream and the access log saw. Assertions go to r; t fails only when
// the parts themselves fail.
func (st *stack) exchange(t *testing.T, r reporter, d *testkit.Demo, c convention, x exchange) {
	t.Helper()
	var h []string
	for _, n := range normalized {
		h = append(h, n, "forged-"+n)
	}
	for _, kv := range familyHeaders {
		h = append(h, kv[0], kv[1])
	}
	for i := 0; i+1 < len(x.headers); i += 2 {
		h = append(h, x.headers[i], d.Expand(t, x.headers[i+1]))
	}
	before := st.up.count()
	a := send(t, st.addr, x.method, x.target, x.body, h...)
	wantStatus := x.status
	if wantStatus == 0 {
		wantStatus = 200
	}
	if a.status != wantStatus {
		r.Errorf("%s %s: status %d, want %d: %s", x.method, x.target, a.status, wantStatus, a.body)
		return
	}
	if wantStatus != 200 {
		st.checkDeny(t, r, x, a, before)
		return
	}
	st.checkAllow(t, r, c, x, a)
}

// checkAllow checks what the upstream received, from the copy it echoed.
func (st *stack) checkAllow(t *testing.T, r reporter, c convention, x exchange, a answer) {
	t.Helper()
	var got seen
	if err := json.Unmarshal(a.body, &got); err != nil {
		t.Fatalf("the upstream's echo %q: %v", a.body, err)
	}
	if got.Method != x.method || got.URI != x.target || got.Body != x.body {
		r.Errorf("the upstream received %s %s %q, want %s %s %q", got.Method, got.URI, got.Body, x.method, x.target, x.body)
	}
	for _, n := range normalized {
		if v, ok := got.Header[n]; x.want[n] == "" && ok {
			r.Errorf("%s reached the upstream (%q): Portcullis had no value for it, so it must be removed", n, v)
		} else if v != x.want[n] {
			r.Errorf("the upstream received %s = %q, want %q", n, v, x.want[n])
		}
	}
	for _, n := range slices.Concat(c.context, c.credentials) {
		if v, ok := got.Header[n]; ok {
			r.Errorf("the client's %s reached the upstream (%q)", n, v)
		}
	}
	for _, kv := range familyHeaders {
		if st.others {
			break
		}
		n := strings.ToLower(kv[0])
		v, ok := got.Header[n]
		switch {
		case n == "x-forwarded-proto":
			if v != "http" { // Envoy's own, for the plain-HTTP listener
				r.Errorf("the upstream received x-forwarded-proto %q, want Envoy's \"http\"", v)
			}
		case ok:
			r.Errorf("the client's %s reached the upstream (%q)", kv[0], v)
		}
	}
	id := got.Header["x-request-id"]
	if id == "" {
		r.Errorf("the upstream received no x-request-id")
		return
	}
	if !st.others {
		st.checkLog(t, r, id, x, 200, "allowed")
	}
}

// checkDeny checks the client's answer to a denied request, and that the
// upstream received nothing.
func (st *stack) checkDeny(t *testing.T, r reporter, x exchange, a answer, before int) {
	t.Helper()
	if n := st.up.count(); n != before {
		r.Errorf("%d requests reached the upstream on a deny", n-before)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		r.Errorf("deny Content-Type %q, want application/json", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(a.body, &body); err != nil {
		r.Errorf("deny body %q is not a JSON object of strings: %v", a.body, err)
		return
	}
	if keys := slices.Sorted(maps.Keys(body)); !slices.Equal(keys, []string{"error", "id", "reason"}) {
		r.Errorf("deny body fields %v, want error, id, reason: %s", keys, a.body)
	}
	if body["reason"] != x.reason {
		r.Errorf("deny reason %q, want %q", body["reason"], x.reason)
	}
	challenge := a.header.Get("WWW-Authenticate")
	if x.status == 401 && !strings.HasPrefix(challenge, `Bearer realm="portcullis"`) || x.status != 401 && challenge != "" {
		r.Errorf("status %d with WWW-Authenticate %q", x.status, challenge)
	}
	if st.transport == "http" && a.header.Get("X-Portcullis-Reason") != x.reason {
		r.Errorf("x-portcullis-reason %q, want %q", a.header.Get("X-Portcullis-Reason"), x.reason)
	}
	if body["id"] == "" {
		r.Errorf("deny body without an id: %s", a.body)
		return
	}
	if !st.others {
		st.checkLog(t, r, body["id"], x, x.status, x.reason)
	}
}

// accessEntry is one line of the shipped configurations' JSON access log.
type accessEntry struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	Status     int    `json:"status"`
	Flags      string `json:"flags"`
	RequestID  string `json:"request_id"`
	DecisionID string `json:"decision_id"`
	Tenant     string `json:"tenant"`
	TenantKind string `json:"tenant_kind"`
	Tier       string `json:"tier"`
	User       string `json:"user"`
	Key        string `json:"key"`
	Reason     string `json:"reason"`
}

// logEntry waits for the access log line of request id.
func (st *stack) logEntry(t *testing.T, id string) accessEntry {
	t.Helper()
	line := st.envoy.waitAccessLog(t, `"request_id":"`+id+`"`)
	var e accessEntry
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("access log line %q: %v", line, err)
	}
	return e
}

// checkLog checks the access log line of the request Envoy identified as
// id: its status, path (without query), the decision id (Portcullis's,
// from the dynamic metadata: Envoy's request id), and the identity and
// reason the configuration logs.
func (st *stack) checkLog(t *testing.T, r reporter, id string, x exchange, status int, reason string) {
	t.Helper()
	e := st.logEntry(t, id)
	path, _, _ := strings.Cut(x.target, "?")
	if e.Status != status || e.Method != x.method || e.Path != path {
		r.Errorf("access log %q %q %d, want %q %q %d", e.Method, e.Path, e.Status, x.method, path, status)
	}
	want := accessEntry{Tenant: x.want["x-tenant-id"], TenantKind: x.want["x-tenant-kind"], Tier: x.want["x-auth-tier"],
		User: x.want["x-user-id"], Key: x.want["x-credential-id"], Reason: reason}
	got := accessEntry{Tenant: e.Tenant, TenantKind: e.TenantKind, Tier: e.Tier, User: e.User, Key: e.Key, Reason: e.Reason}
	if st.transport == "grpc" {
		if e.DecisionID != id {
			r.Errorf("access log decision_id %q, want Envoy's request id %q", e.DecisionID, id)
		}
		if status != 200 {
			// A deny's metadata names what the check learnt: the tier and key
			// it verified (tier_too_low), or nothing (missing_credential).
			got.Tenant, got.TenantKind, got.Tier, got.User, got.Key = "", "", "", "", ""
		}
	} else {
		// Over HTTP the identity comes from the headers of an allow, the
		// reason from a deny's x-portcullis-reason.
		if status == 200 {
			want.Reason = ""
		} else {
			got.Tenant, got.TenantKind, got.Tier, got.User, got.Key = "", "", "", "", ""
		}
	}
	if status != 200 {
		want.Tenant, want.TenantKind, want.Tier, want.User, want.Key = "", "", "", "", ""
	}
	if got != want {
		r.Errorf("access log identity %+v, want %+v", got, want)
	}
}

// TestDecisionIDIsEnvoysRequestID: Envoy makes the request id at the edge
// (a client's own x-request-id is replaced); Portcullis's decision id is
// that id, in the deny body, in the access log, and at the upstream.
func TestDecisionIDIsEnvoysRequestID(t *testing.T) {
	envoyBinary(t)
	d := testkit.Load(t, "three-tiers")
	p := serveExample(t, d.Policy(), "--log-level", "debug")
	up := newUpstream(t)
	for _, s := range frontProxies {
		t.Run(s.file, func(t *testing.T) {
			st := startStack(t, s, shippedDoc(t, s.file), p, up)
			a := send(t, st.addr, "GET", "/images/1", "", "x-request-id", "chosen-by-the-client")
			var body map[string]string
			if err := json.Unmarshal(a.body, &body); err != nil || a.status != http.StatusUnauthorized {
				t.Fatalf("%d %s", a.status, a.body)
			}
			if body["id"] == "" || body["id"] == "chosen-by-the-client" {
				t.Errorf("deny id %q: want the id Envoy made", body["id"])
			}
			if e := st.logEntry(t, body["id"]); e.Status != 401 {
				t.Errorf("the access log's line for request id %s: %+v", body["id"], e)
			}
			a = send(t, st.addr, "GET", "/images/1", "", "x-api-key", d.Key(t, "acme"), "x-request-id", "chosen-by-the-client")
			var got seen
			if err := json.Unmarshal(a.body, &got); err != nil || a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			id := got.Header["x-request-id"]
			if id == "" || id == "chosen-by-the-client" {
				t.Errorf("the upstream's x-request-id %q: want the id Envoy made", id)
			}
			p.waitLog(t, msgIs("decision", "request_id", id, "allow", true))
		})
	}
}
