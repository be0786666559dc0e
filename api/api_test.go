package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgreSQL()
	os.Exit(code)
}

// apiEnv is the API over a real PostgreSQL, with the self-service example's
// policy (edited by the test when it needs to), and its demo principals.
type apiEnv struct {
	t      *testing.T
	srv    *httptest.Server
	store  *store.Store
	mirror *store.Mirror
	router routers.Router
	demo   *testkit.Demo
	snap   *policy.Snapshot
	live   *atomic.Pointer[policy.Snapshot] // what the API serves: snap, until replace
	dir    string                           // the policy's folder
	log    *bytes.Buffer
	skew   *atomic.Int64 // added to the API's clock (expiry tests)
}

func newAPI(t *testing.T, edit func(policy string) string) *apiEnv {
	t.Helper()
	ctx := context.Background()
	demo := testkit.Load(t, "self-service")
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "management-tokens.yaml", "accounts-jwks.json"} {
		b, err := os.ReadFile(filepath.Join(demo.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "policy.yaml" && edit != nil {
			b = []byte(edit(string(b)))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := policy.Load(filepath.Join(dir, "policy.yaml"), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	cfg, _ := pgx.ParseConfig(dsn)
	var log bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&log, nil))
	m := store.NewMirror(cfg, store.MirrorOptions{Log: logger})
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(mctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	st := store.New(pool)
	skew := new(atomic.Int64)
	live := new(atomic.Pointer[policy.Snapshot])
	live.Store(snap)
	h := api.New(api.Config{Store: st, Mirror: m, Usage: store.NewUsage(pool), Policy: live.Load, Log: logger,
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiEnv{t: t, srv: srv, store: st, mirror: m, router: router, demo: demo, snap: snap, live: live, dir: dir, log: &log, skew: skew}
}

// replace edits the policy file as a reload would and serves the result
// from the next call on.
func (e *apiEnv) replace(old, new string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "policy.yaml")
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), old) {
		e.t.Fatalf("the policy has no %q (%v)", old, err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	snap, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.live.Store(snap)
}

// token returns the Authorization value of a principal: "console" (the
// management token), or a demo user token's name.
func (e *apiEnv) token(who string) string {
	if who == "" {
		return ""
	}
	if tok, ok := e.demo.ManagementTokens[who]; ok {
		return "Bearer " + tok
	}
	return "Bearer " + e.demo.Token(e.t, who, time.Now(), time.Hour, nil)
}

// answer is one API answer.
type answer struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// call sends one request as who and checks the request and the answer
// against the OpenAPI document.
func (e *apiEnv) call(who, method, path string, body any) answer {
	e.t.Helper()
	return e.send(who, method, path, body, false)
}

// callMalformed sends a request that is malformed on purpose: only the
// answer is checked against the OpenAPI document. A string body is sent
// as it is.
func (e *apiEnv) callMalformed(who, method, path string, body any) answer {
	e.t.Helper()
	return e.send(who, method, path, body, true)
}

func (e *apiEnv) send(who, method, path string, body any, malformed bool) answer {
	e.t.Helper()
	return e.sendWith(who, method, path, body, malformed, nil)
}

// sendWith is send with the request changed by edit before it goes (a
// session's cookie and CSRF header, an Origin).
func (e *apiEnv) sendWith(who, method, path string, body any, malformed bool, edit func(*http.Request)) answer {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(raw))
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if who != "" {
		req.Header.Set("Authorization", e.token(who))
	}
	if edit != nil {
		edit(req)
	}
	route, params, err := e.router.FindRoute(req)
	if err != nil {
		e.t.Fatalf("%s %s is not in openapi.json: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if !malformed {
		vreq := req.Clone(context.Background())
		vreq.Body = io.NopCloser(bytes.NewReader(raw))
		in.Request = vreq
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			e.t.Fatalf("%s %s: the request does not match openapi.json: %v", method, path, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(raw))
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	in.Request = req
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(b)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}); err != nil {
		e.t.Fatalf("%s %s: answer %d %s does not match openapi.json: %v", method, path, resp.StatusCode, b, err)
	}
	a := answer{status: resp.StatusCode, raw: string(b), header: resp.Header}
	_ = json.Unmarshal(b, &a.body)
	return a
}

func (e *apiEnv) want(a answer, status int, reason string) {
	e.t.Helper()
	if a.status != status || (reason != "" && a.str("reason") != reason) {
		e.t.Fatalf("got %d %s, want %d %s", a.status, a.raw, status, reason)
	}
}

// wait returns once this replica's mirror has applied the change a returned.
func (e *apiEnv) wait(a answer) {
	e.t.Helper()
	v, _ := a.body["version"].(float64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.mirror.Wait(ctx, int64(v)); err != nil {
		e.t.Fatal(err)
	}
}

// allowed reports whether the mirror lets key through, as a check would
// look it up.
func (e *apiEnv) found(key string) (keys.APIKey, bool) {
	return e.mirror.Keys().Lookup(keys.DigestOf(key))
}

func (e *apiEnv) version() int64 {
	v, err := e.store.Version(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func ids(a answer) []string {
	var out []string
	list, _ := a.body["keys"].([]any)
	for _, k := range list {
		out = append(out, k.(map[string]any)["id"].(string))
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestKeyLifecycle: alice creates a key (shown once, in the minted
// format), it reaches the mirror, she changes, refreshes with an overlap,
// disables and deletes it; every answer matches openapi.json and says
// which version holds it.
func TestKeyLifecycle(t *testing.T) {
	// Without key_lifetime a key may be made to never expire.
	e := newAPI(t, func(p string) string { return strings.Replace(p, "key_lifetime: 365d", "", 1) })
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "laptop", "description": "my notebook", "tier": "admin", "expires_in": "30d"})
	e.want(a, 201, "")
	key := a.str("key")
	if !strings.HasPrefix(key, keys.DefaultPrefix) || len(key) != len(keys.DefaultPrefix)+49 || !keys.WellFormed(key) ||
		a.str("start") != key[:12] || a.str("user") != "u-alice" || a.body["tenant"] != nil || a.str("state") != "active" {
		t.Fatalf("created %s", a.raw)
	}
	id := a.str("id")
	e.wait(a)
	if k, ok := e.found(key); !ok || k.ID != id || k.User != "u-alice" || k.Tier != "admin" {
		t.Fatalf("mirror: %+v %v", k, ok)
	}
	got := e.call("alice", "GET", "/v1/keys/"+id, nil)
	e.want(got, 200, "")
	if strings.Contains(got.raw, key) || strings.Contains(got.raw, keys.DigestOf(key).String()) || got.body["key"] != nil {
		t.Fatal("a get shows the key or its digest")
	}

	a = e.call("alice", "PATCH", "/v1/keys/"+id, map[string]any{"label": "work laptop", "expires_at": nil})
	e.want(a, 200, "")
	if a.str("label") != "work laptop" || a.body["expires_at"] != nil {
		t.Fatalf("patched %s", a.raw)
	}
	a = e.call("alice", "POST", "/v1/keys/"+id+"/refresh", map[string]any{"overlap": "1h"})
	e.want(a, 200, "")
	fresh := a.str("key")
	e.wait(a)
	if _, ok := e.found(key); !ok {
		t.Fatal("the old value stopped during the overlap")
	}
	if k, ok := e.found(fresh); !ok || k.ID != id {
		t.Fatal("the new value does not work")
	}
	a = e.call("alice", "POST", "/v1/keys/"+id+"/refresh", nil)
	e.want(a, 200, "")
	newest := a.str("key")
	e.wait(a)
	if _, ok := e.found(fresh); ok {
		t.Fatal("a refresh without overlap kept the old value")
	}
	a = e.call("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true})
	e.want(a, 200, "")
	e.wait(a)
	if k, _ := e.found(newest); !k.Disabled || a.str("state") != "disabled" {
		t.Fatal("disable not applied")
	}
	a = e.call("alice", "DELETE", "/v1/keys/"+id, nil)
	e.want(a, 200, "")
	e.wait(a)
	if _, ok := e.found(newest); ok {
		t.Fatal("a deleted key is found")
	}
	e.want(e.call("alice", "GET", "/v1/keys/"+id, nil), 404, "not_found")
	st := e.call("", "GET", "/v1/status", nil)
	if st.status != 200 || st.body["version"].(float64) < a.body["version"].(float64) || st.body["connected"] != true {
		t.Fatalf("status %s", st.raw)
	}
	if strings.Count(e.log.String(), `"msg":"key changed"`) != 6 || strings.Contains(e.log.String(), key) || strings.Contains(e.log.String(), keys.DigestOf(key).String()) {
		t.Errorf("audit log:\n%s", e.log.String())
	}
}

// TestWhoManagesWhat: a user sees, changes and learns of their own keys
// only (another user's key is a 404, whatever the call); a tenant admin
// also every key bound to their tenants, but not other members' unbound
// keys; the management token everything, and may name any user.
func TestWhoManagesWhat(t *testing.T) {
	e := newAPI(t, nil)
	mk := func(who string, body map[string]any) string {
		a := e.call(who, "POST", "/v1/keys", body)
		e.want(a, 201, "")
		return a.str("id")
	}
	alicePersonal := mk("alice", map[string]any{"label": "p", "tier": "service"})
	aliceOrg := mk("alice", map[string]any{"label": "o", "tier": "service", "tenant": "org-acme"})
	bob := mk("bob", map[string]any{"label": "b", "tier": "service"})
	byConsole := mk("console", map[string]any{"label": "c", "tier": "admin", "user": "ext-42"})

	for _, tc := range []struct {
		who      string
		sees, no []string
	}{
		{"alice", []string{alicePersonal, aliceOrg}, []string{bob, byConsole}},
		{"bob", []string{bob}, []string{alicePersonal, aliceOrg, byConsole}},
		{"carol-admin", []string{aliceOrg}, []string{alicePersonal, bob, byConsole}},
		{"console", []string{alicePersonal, aliceOrg, bob, byConsole}, nil},
	} {
		list := ids(e.call(tc.who, "GET", "/v1/keys", nil))
		for _, id := range tc.sees {
			if !has(list, id) {
				t.Errorf("%s does not see %s", tc.who, id)
			}
			e.want(e.call(tc.who, "GET", "/v1/keys/"+id, nil), 200, "")
		}
		for _, id := range tc.no {
			if has(list, id) {
				t.Errorf("%s sees %s", tc.who, id)
			}
			before := e.version()
			for _, c := range []struct {
				method, path string
				body         any
			}{
				{"GET", "/v1/keys/" + id, nil}, {"GET", "/v1/keys/" + id + "/usage", nil},
				{"PATCH", "/v1/keys/" + id, map[string]any{"label": "mine now"}},
				{"POST", "/v1/keys/" + id + "/refresh", nil}, {"DELETE", "/v1/keys/" + id, nil},
			} {
				if a := e.call(tc.who, c.method, c.path, c.body); a.status != 404 || a.str("reason") != "not_found" {
					t.Errorf("%s %s %s of another's key: %d %s, want 404", tc.who, c.method, c.path, a.status, a.raw)
				}
			}
			if e.version() != before {
				t.Errorf("%s changed %s", tc.who, id)
			}
		}
	}
	// Bulk deletes and listings naming another user are refused; a
	// tenant's bulk delete by its admin reaches only that tenant's keys.
	e.want(e.call("bob", "POST", "/v1/keys/revoke", map[string]any{"user": "u-alice"}), 403, "forbidden")
	e.want(e.call("bob", "GET", "/v1/keys?user=u-alice", nil), 403, "forbidden")
	a := e.call("carol-admin", "POST", "/v1/keys/revoke", map[string]any{"tenant": "org-acme"})
	e.want(a, 200, "")
	if a.body["revoked"].(float64) != 1 {
		t.Fatalf("carol deleted %v keys, want 1 (alice's org key)", a.body["revoked"])
	}
	if !has(ids(e.call("alice", "GET", "/v1/keys", nil)), alicePersonal) {
		t.Error("a tenant admin's bulk delete reached a member's personal key")
	}
}

// TestWhatAUserMayGive: a tier outside self_service.tiers, a tenant the
// user is not in, another user, are 403; the policy's key_lifetime is the
// longest and the default; nothing refused changes anything.
func TestWhatAUserMayGive(t *testing.T) {
	e := newAPI(t, func(p string) string {
		return strings.Replace(p, "  admin:   { requires_any: [ { key: any } ], description: \"Read and write: every method under /v1\" }",
			"  admin:   { requires_any: [ { key: any } ] }\n  partner: { requires_any: [ { key: any } ] }", 1)
	})
	before := e.version()
	for _, tc := range []struct {
		body   map[string]any
		status int
		reason string
	}{
		{map[string]any{"label": "x", "tier": "partner"}, 403, "forbidden"},
		{map[string]any{"label": "x", "tier": "service", "tenant": "org-globex"}, 403, "forbidden"},
		{map[string]any{"label": "x", "tier": "service", "user": "u-bob"}, 403, "forbidden"},
		{map[string]any{"label": "x", "tier": "gold"}, 400, "bad_request"},
		{map[string]any{"label": "x", "tier": "service", "tenant": "org-initech"}, 400, "bad_request"},
		{map[string]any{"label": "x", "tier": "service", "expires_in": "400d"}, 400, "bad_request"},
	} {
		a := e.call("alice", "POST", "/v1/keys", tc.body)
		if a.status != tc.status || a.str("reason") != tc.reason {
			t.Errorf("%v: %d %s, want %d %s", tc.body, a.status, a.raw, tc.status, tc.reason)
		}
	}
	if e.version() != before {
		t.Fatal("a refused create changed something")
	}
	a := e.call("console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "partner", "user": "u-bob"})
	e.want(a, 201, "")
	exp, _ := time.Parse(time.RFC3339, a.str("expires_at"))
	created, _ := time.Parse(time.RFC3339, a.str("created_at"))
	if d := exp.Sub(created); d != 365*24*time.Hour {
		t.Fatalf("default expiry %s after creation, want the policy's key_lifetime", d)
	}
	e.want(e.call("console", "PATCH", "/v1/keys/"+a.str("id"), map[string]any{"expires_at": nil}), 400, "bad_request")
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "user": "org-acme"}), 400, "bad_request")
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "id": a.str("id"), "user": "u-bob"}), 409, "conflict")
}

// TestBadInput: malformed and oversize bodies, unknown fields, wrong types,
// bad ids, labels, tiers, expiries and paging tokens, SQL metacharacters in
// every string field: each a 400 that names what is wrong, and nothing
// changed.
func TestBadInput(t *testing.T) {
	e := newAPI(t, nil)
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "service"})
	e.want(a, 201, "")
	id := a.str("id")
	sql := "'; DROP TABLE portcullis_keys; --"
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	before := e.version()
	for _, tc := range []struct {
		name, method, path string
		body               any
	}{
		{"not JSON", "POST", "/v1/keys", `{"label": "x", "tier": "service"`},
		{"a JSON array", "POST", "/v1/keys", `[{"label":"x","tier":"service"}]`},
		{"data after the object", "POST", "/v1/keys", `{"label":"x","tier":"service"} {"label":"y"}`},
		{"unknown field", "POST", "/v1/keys", `{"label":"x","tier":"service","colour":"red"}`},
		{"wrong type", "POST", "/v1/keys", `{"label":7,"tier":"service"}`},
		{"over 64 KiB", "POST", "/v1/keys", `{"label":"x","tier":"service","description":"` + strings.Repeat("a", 70000) + `"}`},
		{"empty body", "POST", "/v1/keys", ``},
		{"no label", "POST", "/v1/keys", `{"tier":"service"}`},
		{"label too long", "POST", "/v1/keys", `{"label":"` + strings.Repeat("x", 101) + `","tier":"service"}`},
		{"label with a newline", "POST", "/v1/keys", `{"label":"a\nb","tier":"service"}`},
		{"no tier", "POST", "/v1/keys", `{"label":"x"}`},
		{"unknown tier", "POST", "/v1/keys", `{"label":"x","tier":"` + sql + `"}`},
		{"bad id", "POST", "/v1/keys", `{"label":"x","tier":"service","id":"` + sql + `"}`},
		{"id too long", "POST", "/v1/keys", `{"label":"x","tier":"service","id":"` + strings.Repeat("a", 65) + `"}`},
		{"tenant with SQL", "POST", "/v1/keys", `{"label":"x","tier":"service","tenant":"` + sql + `"}`},
		{"expiry in the past", "POST", "/v1/keys", `{"label":"x","tier":"service","expires_at":"` + past + `"}`},
		{"expiry not RFC 3339", "POST", "/v1/keys", `{"label":"x","tier":"service","expires_at":"tomorrow"}`},
		{"both expiries", "POST", "/v1/keys", `{"label":"x","tier":"service","expires_in":"1d","expires_at":"2099-01-01T00:00:00Z"}`},
		{"bad lifetime unit", "POST", "/v1/keys", `{"label":"x","tier":"service","expires_in":"3w"}`},
		{"negative lifetime", "POST", "/v1/keys", `{"label":"x","tier":"service","expires_in":"-1d"}`},
		{"tier in a patch", "PATCH", "/v1/keys/" + id, `{"tier":"admin"}`},
		{"id in a patch", "PATCH", "/v1/keys/" + id, `{"id":"other"}`},
		{"expires_in in a patch", "PATCH", "/v1/keys/" + id, `{"expires_in":"1d"}`},
		{"SQL label in a patch", "PATCH", "/v1/keys/" + id, `{"label":"` + strings.Repeat("'", 101) + `"}`},
		{"bad overlap", "POST", "/v1/keys/" + id + "/refresh", `{"overlap":"soon"}`},
		{"revoke naming nobody", "POST", "/v1/keys/revoke", `{}`},
		{"revoke unknown tenant", "POST", "/v1/keys/revoke", `{"tenant":"` + sql + `"}`},
		{"bad page size", "GET", "/v1/keys?page_size=0", nil},
		{"huge page size", "GET", "/v1/keys?page_size=100000", nil},
		{"bad page token", "GET", "/v1/keys?page_token=" + "%27%3B--", nil},
		{"unknown parameter", "GET", "/v1/keys?colour=red", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			a := e.callMalformed("alice", tc.method, tc.path, tc.body)
			if a.status != 400 || a.str("reason") != "bad_request" || a.str("error") == "" {
				t.Fatalf("%d %s, want 400 bad_request", a.status, a.raw)
			}
		})
	}
	e.t = t
	if e.version() != before {
		t.Fatal("a refused call changed something")
	}
	// SQL metacharacters that are valid values are stored as written.
	a = e.call("alice", "POST", "/v1/keys", map[string]any{"label": sql, "description": sql + ` \ " %`, "tier": "service"})
	e.want(a, 201, "")
	if got := e.call("alice", "GET", "/v1/keys/"+a.str("id"), nil); got.str("label") != sql {
		t.Fatalf("label %q", got.str("label"))
	}
	e.want(e.call("", "GET", "/v1/keys", nil), 401, "missing_credential")
	e.want(e.callMalformed("alice", "GET", "/v1/keys/"+url(sql), nil), 404, "not_found")
}

func url(s string) string { return strings.NewReplacer("'", "%27", " ", "%20", ";", "%3B").Replace(s) }

// TestPaging: page_size is a maximum; an empty next_page_token ends it.
func TestPaging(t *testing.T) {
	e := newAPI(t, nil)
	made := map[string]bool{}
	for i := range 5 {
		a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": fmt.Sprint(i), "tier": "service"})
		made[a.str("id")] = true
	}
	seen, token, pages := map[string]bool{}, "", 0
	for {
		path := "/v1/keys?page_size=2"
		if token != "" {
			path += "&page_token=" + token
		}
		a := e.call("alice", "GET", path, nil)
		e.want(a, 200, "")
		pages++
		for _, id := range ids(a) {
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
		}
		if token = a.str("next_page_token"); token == "" {
			break
		}
	}
	if len(seen) != 5 || pages != 3 {
		t.Fatalf("%d keys in %d pages", len(seen), pages)
	}
}

// TestLimitsUnderConcurrentCreates: with per_user_limit 5, 20 concurrent
// creates leave exactly 5 keys and 15 limit_reached.
func TestLimitsUnderConcurrentCreates(t *testing.T) {
	e := newAPI(t, func(p string) string { return strings.Replace(p, "per_user_limit: 50", "per_user_limit: 5", 1) })
	type result struct {
		status int
		reason string
	}
	results := make(chan result, 20)
	auth := e.token("alice")
	for range 20 {
		go func() {
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/keys", strings.NewReader(`{"label":"c","tier":"service"}`))
			req.Header.Set("Authorization", auth)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			var b struct{ Reason string }
			_ = json.NewDecoder(resp.Body).Decode(&b)
			results <- result{resp.StatusCode, b.Reason}
		}()
	}
	created, limited := 0, 0
	for range 20 {
		switch r := <-results; {
		case r.status == 201:
			created++
		case r.status == 409 && r.reason == "limit_reached":
			limited++
		default:
			t.Errorf("%+v", r)
		}
	}
	if created != 5 || limited != 15 || len(ids(e.call("alice", "GET", "/v1/keys", nil))) != 5 {
		t.Fatalf("%d created, %d limited", created, limited)
	}
}
