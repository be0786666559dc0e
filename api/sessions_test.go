package api_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/policy"
)

// session is a token page session as the page holds it.
type session struct {
	cookie, csrf string
}

// open opens a session for user (and tenant) with the console's token and
// exchanges its code, as the platform backend and the page do.
func (e *apiEnv) open(user, tenant string) session {
	e.t.Helper()
	body := map[string]any{"user": user}
	if tenant != "" {
		body["tenant"] = tenant
	}
	a := e.call("console", "POST", "/v1/sessions", body)
	e.want(a, 201, "")
	code := strings.TrimPrefix(a.str("url"), "/#code=")
	x := e.exchange(code, nil)
	e.want(x, 200, "")
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: x.header}).Cookies() {
		if c.Name == api.SessionCookie {
			cookie = c
		}
	}
	if cookie == nil {
		e.t.Fatalf("no session cookie: %v", x.header)
	}
	return session{cookie.Value, x.str("csrf_token")}
}

func (e *apiEnv) exchange(code string, edit func(*http.Request)) answer {
	e.t.Helper()
	return e.sendWith("", "POST", "/v1/sessions/exchange", map[string]any{"code": code}, false, edit)
}

// as calls the API with the session's cookie and CSRF token, changed by
// edit.
func (e *apiEnv) as(s session, method, path string, body any, edit func(*http.Request)) answer {
	e.t.Helper()
	return e.sendWith("", method, path, body, false, func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: s.cookie})
		r.Header.Set(api.CSRFHeader, s.csrf)
		if edit != nil {
			edit(r)
		}
	})
}

// TestSessionOpenAndExchange: only a management token opens a session, for
// a user (and one of their tenants); the code is good once and for five
// minutes; the exchange sets an httpOnly, SameSite=Strict cookie for at
// most eight hours, never from another origin.
func TestSessionOpenAndExchange(t *testing.T) {
	e := newAPI(t, nil)
	e.want(e.call("alice", "POST", "/v1/sessions", map[string]any{"user": "u-alice"}), 403, "forbidden")
	e.want(e.call("", "POST", "/v1/sessions", map[string]any{"user": "u-alice"}), 401, "missing_credential")
	for _, bad := range []map[string]any{{}, {"user": ""}, {"user": "org-acme"}, {"user": "u-alice", "tenant": "org-globex"},
		{"user": "u-alice", "tenant": "initech"}, {"user": "u-alice", "extra": 1}, {"user": 7}} {
		e.want(e.callMalformed("console", "POST", "/v1/sessions", bad), 400, "bad_request")
	}
	a := e.call("console", "POST", "/v1/sessions", map[string]any{"user": "u-alice", "tenant": "org-acme"})
	e.want(a, 201, "")
	code := strings.TrimPrefix(a.str("url"), "/#code=")
	if exp, _ := time.Parse(time.RFC3339, a.str("expires_at")); time.Until(exp) > 5*time.Minute+time.Second || exp.Before(time.Now()) {
		t.Errorf("the code expires at %s", a.str("expires_at"))
	}
	// From another origin: refused, and the code stays good.
	for _, edit := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") },
		func(r *http.Request) { r.Header.Set("Origin", "null") }, // a sandboxed frame, a file
		func(r *http.Request) { r.Header.Set("Origin", "ftp://"+r.Host) },
		func(r *http.Request) { r.Header.Set("Origin", "http://"+r.Host+".evil.example") },
		func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
		func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") },
	} {
		e.want(e.exchange(code, edit), 403, "csrf")
	}
	x := e.exchange(code, func(r *http.Request) {
		r.Header.Set("Origin", "http://"+r.Host)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	e.want(x, 200, "")
	if x.str("user") != "u-alice" || x.str("tenant") != "org-acme" || len(x.str("csrf_token")) != 43 {
		t.Errorf("exchange answer %s", x.raw)
	}
	cookie := x.header.Get("Set-Cookie")
	for _, want := range []string{api.SessionCookie + "=", "Path=/", "Max-Age=28800", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("Set-Cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("Secure on a listener without TLS: %s", cookie)
	}
	// Good once.
	e.want(e.exchange(code, nil), 401, "invalid_session")
	// Unknown, empty, oversize codes.
	for _, c := range []string{"nope", "", strings.Repeat("A", 43), strings.Repeat("A", 500), "' OR 1=1 --"} {
		e.want(e.exchange(c, nil), 401, "invalid_session")
	}
	e.want(e.callMalformed("", "POST", "/v1/sessions/exchange", `{"code": 1}`), 400, "bad_request")
	// An expired code.
	a = e.call("console", "POST", "/v1/sessions", map[string]any{"user": "u-alice"})
	e.skew.Store(int64(5*time.Minute + time.Second))
	e.want(e.exchange(strings.TrimPrefix(a.str("url"), "/#code="), nil), 401, "invalid_session")
	e.skew.Store(0)
	// The codes, cookies and CSRF tokens never reach the log.
	for _, secret := range []string{code, x.str("csrf_token"), strings.SplitN(strings.TrimPrefix(cookie, api.SessionCookie+"="), ";", 2)[0]} {
		if strings.Contains(e.log.String(), secret) {
			t.Error("a session secret is in the log")
		}
	}
}

// TestSessionActsAsItsUser: a session does exactly what the user's JWT
// does: alice's own keys, the tiers and tenants she may give, not bob's
// keys; every cookie call needs the session's CSRF token and the page's
// origin; logout ends it on the server, and so do eight hours.
func TestSessionActsAsItsUser(t *testing.T) {
	e := newAPI(t, nil)
	alice := e.open("u-alice", "")
	bob := e.open("u-bob", "org-globex")
	cur := e.as(alice, "GET", "/v1/sessions/current", nil, nil)
	e.want(cur, 200, "")
	if cur.str("user") != "u-alice" || cur.str("max_lifetime") != "365d" || !strings.Contains(cur.raw, `"tenants":["org-acme"]`) ||
		!strings.Contains(cur.raw, `"tiers":["service","admin"]`) {
		t.Errorf("current session %s", cur.raw)
	}
	k := e.as(alice, "POST", "/v1/keys", map[string]any{"label": "laptop", "tier": "admin", "tenant": "org-acme"}, nil)
	e.want(k, 201, "")
	id := k.str("id")
	e.want(e.as(alice, "POST", "/v1/keys", map[string]any{"label": "x", "tier": "superuser"}, nil), 400, "bad_request")
	e.want(e.as(alice, "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "tenant": "org-globex"}, nil), 403, "forbidden")
	e.want(e.as(alice, "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "user": "u-bob"}, nil), 403, "forbidden")
	// Bob sees nothing of alice's key.
	for _, c := range []struct{ method, path string }{{"GET", "/v1/keys/" + id}, {"DELETE", "/v1/keys/" + id}, {"GET", "/v1/keys/" + id + "/usage"}} {
		e.want(e.as(bob, c.method, c.path, nil, nil), 404, "not_found")
	}
	if list := ids(e.as(bob, "GET", "/v1/keys", nil, nil)); len(list) != 0 {
		t.Errorf("bob lists %v", list)
	}
	// The CSRF token and the origin, on every call.
	for name, edit := range map[string]func(*http.Request){
		"no CSRF header":      func(r *http.Request) { r.Header.Del(api.CSRFHeader) },
		"another's CSRF":      func(r *http.Request) { r.Header.Set(api.CSRFHeader, bob.csrf) },
		"a made-up CSRF":      func(r *http.Request) { r.Header.Set(api.CSRFHeader, strings.Repeat("A", 43)) },
		"another origin":      func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") },
		"a cross-site fetch":  func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
		"a same-site subsite": func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") },
	} {
		for _, c := range []struct {
			method, path string
			body         any
		}{{"GET", "/v1/keys", nil}, {"POST", "/v1/keys", map[string]any{"label": "csrf", "tier": "service"}}, {"DELETE", "/v1/keys/" + id, nil},
			{"POST", "/v1/keys/revoke", map[string]any{"user": "u-alice"}}, {"POST", "/v1/sessions/logout", map[string]any{}}} {
			if a := e.as(alice, c.method, c.path, c.body, edit); a.status != 403 || a.str("reason") != "csrf" {
				t.Errorf("%s: %s %s: %d %s, want 403 csrf", name, c.method, c.path, a.status, a.raw)
			}
		}
	}
	if got := ids(e.as(alice, "GET", "/v1/keys", nil, nil)); len(got) != 1 || got[0] != id {
		t.Errorf("after the refused calls alice has %v", got)
	}
	// A forged or unknown cookie.
	e.want(e.as(session{"forged", alice.csrf}, "GET", "/v1/keys", nil, nil), 401, "invalid_session")
	// Logout ends the session on the server: the same cookie is refused.
	out := e.as(alice, "POST", "/v1/sessions/logout", map[string]any{}, nil)
	e.want(out, 200, "")
	if c := out.header.Get("Set-Cookie"); !strings.Contains(c, "Max-Age=0") {
		t.Errorf("logout does not clear the cookie: %q", c)
	}
	e.want(e.as(alice, "GET", "/v1/keys", nil, nil), 401, "invalid_session")
	// Eight hours end one too.
	e.skew.Store(int64(8*time.Hour + time.Second))
	e.want(e.as(bob, "GET", "/v1/keys", nil, nil), 401, "invalid_session")
	e.skew.Store(0)
	e.want(e.as(bob, "GET", "/v1/keys", nil, nil), 200, "")
	// A management token or a JWT is not a session.
	e.want(e.call("console", "GET", "/v1/sessions/current", nil), 400, "bad_request")
}

// TestPageIsServed: the token page and its two assets, under a CSP that
// allows nothing from another origin and no inline script or style; any
// other path is a JSON 404.
func TestPageIsServed(t *testing.T) {
	e := newAPI(t, nil)
	for path, typ := range map[string]string{"/": "text/html", "/assets/app.js": "text/javascript", "/assets/style.css": "text/css"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || !strings.HasPrefix(h.Get("Content-Type"), typ) || h.Get("Content-Security-Policy") != api.PageCSP ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, h)
		}
	}
	for _, csp := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(api.PageCSP, csp) {
			t.Errorf("the CSP lacks %s", csp)
		}
	}
	if strings.Contains(api.PageCSP, "unsafe") {
		t.Error("the CSP allows unsafe sources")
	}
	for _, path := range []string{"/assets/index.html", "/assets/nope.js", "/assets/../api.go", "/index.html", "/nope"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}

// TestSessionCookieSecureUnderTLS: behind TLS the session cookie is
// Secure, and so it is when the page is https behind a proxy that
// terminates TLS (its Origin says so).
func TestSessionCookieSecureUnderTLS(t *testing.T) {
	e := newAPI(t, nil)
	h := api.New(api.Config{Store: e.store, Mirror: e.mirror, Policy: func() *policy.Snapshot { return e.snap },
		Log: slog.New(slog.DiscardHandler), Secure: true})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	a := e.call("console", "POST", "/v1/sessions", map[string]any{"user": "u-alice"})
	code := strings.TrimPrefix(a.str("url"), "/#code=")
	resp, err := srv.Client().Post(srv.URL+"/v1/sessions/exchange", "application/json", strings.NewReader(`{"code":"`+code+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Set-Cookie"); resp.StatusCode != 200 || !strings.Contains(c, "; Secure") || !strings.Contains(c, "HttpOnly") {
		t.Fatalf("%d Set-Cookie %q", resp.StatusCode, c)
	}
	a = e.call("console", "POST", "/v1/sessions", map[string]any{"user": "u-alice"})
	x := e.exchange(strings.TrimPrefix(a.str("url"), "/#code="), func(r *http.Request) { r.Header.Set("Origin", "https://"+r.Host) })
	if c := x.header.Get("Set-Cookie"); x.status != 200 || !strings.Contains(c, "; Secure") {
		t.Fatalf("an https page behind a TLS proxy: %d Set-Cookie %q", x.status, c)
	}
}
