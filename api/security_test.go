package api_test

// The outside review's second round (SECURITY.md, RT2-01 to RT2-06): each
// test enumerates the variants of its class, not the one request reported.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

const (
	acmeMembers    = "org-acme: { plan: pro, members: [u-alice, { user: u-carol, role: admin }] }"
	acmeWithoutAli = "org-acme: { plan: pro, members: [{ user: u-carol, role: admin }] }"
)

// TestMembershipIsLive (RT2-01): a key bound to a tenant and a user is
// created, refreshed and enabled only while that user is a member of the
// tenant, whoever asks (the user, the tenant's admin, the platform); a key
// bound to the tenant alone does not depend on members. Re-adding the
// member restores everything; a refused call changes nothing.
func TestMembershipIsLive(t *testing.T) {
	e := newAPI(t, nil)
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "org-admin-key", "tier": "admin", "tenant": "org-acme"})
	e.want(a, 201, "")
	bound := a.str("id")
	a = e.call("console", "POST", "/v1/keys", map[string]any{"label": "acme service", "tier": "service", "tenant": "org-acme"})
	e.want(a, 201, "")
	tenantOnly := a.str("id")
	e.want(e.call("alice", "PATCH", "/v1/keys/"+bound, map[string]any{"disabled": true}), 200, "")

	e.replace(acmeMembers, acmeWithoutAli)
	before := e.version()
	for _, who := range []string{"alice", "carol-admin", "console"} {
		e.want(e.call(who, "POST", "/v1/keys/"+bound+"/refresh", nil), 403, "forbidden")
		e.want(e.call(who, "PATCH", "/v1/keys/"+bound, map[string]any{"disabled": false}), 403, "forbidden")
	}
	e.want(e.call("alice", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "tenant": "org-acme"}), 403, "forbidden")
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "tenant": "org-acme", "user": "u-alice"}), 403, "forbidden")
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "tenant": "org-globex", "user": "u-alice"}), 403, "forbidden")
	if e.version() != before {
		t.Fatal("a refused call changed something")
	}
	// What does not make the key act for the tenant stays possible: its
	// owner still sees, renames and deletes it; a tenant-only key lives on.
	e.want(e.call("alice", "GET", "/v1/keys/"+bound, nil), 200, "")
	e.want(e.call("alice", "PATCH", "/v1/keys/"+bound, map[string]any{"label": "left acme"}), 200, "")
	e.want(e.call("console", "POST", "/v1/keys/"+tenantOnly+"/refresh", nil), 200, "")

	e.replace(acmeWithoutAli, acmeMembers)
	e.want(e.call("alice", "POST", "/v1/keys/"+bound+"/refresh", nil), 200, "")
	e.want(e.call("alice", "PATCH", "/v1/keys/"+bound, map[string]any{"disabled": false}), 200, "")
}

// farTimes are expiries a caller may send that no answer could write, or
// that lie beyond the 100 years every time is held to.
func farTimes(now time.Time) []string {
	return []string{
		"9999-12-31T23:30:00-01:00", // valid RFC 3339, year 10000 in UTC
		"9999-12-31T23:59:59Z",
		now.AddDate(100, 0, 2).Format(time.RFC3339),
		now.AddDate(1000, 0, 0).Format(time.RFC3339),
		"10000-01-01T00:00:00Z",
		"+275760-09-13T00:00:00Z",
		"0000-01-01T00:00:00Z",
	}
}

// farLifetimes are lifetimes past 100 years, in every unit, and past what
// a duration holds.
var farLifetimes = []string{"36501d", "876001h", "52560001m", "3153600001s", "9223372036854775807s", "99999999999999999999d", "106751d"}

// TestTimesAreRangeChecked (RT2-02): every time and duration field of every
// call (create's expires_at and expires_in, a change's expires_at, a
// refresh's expires_at, expires_in and overlap) refuses what lies beyond
// 100 years with a 400 naming the field, and changes nothing; 100 years
// itself is accepted; every listing keeps encoding.
func TestTimesAreRangeChecked(t *testing.T) {
	e := newAPI(t, func(p string) string { return strings.Replace(p, "key_lifetime: 365d", "", 1) })
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "service", "tenant": "org-acme"})
	e.want(a, 201, "")
	id := a.str("id")
	type call struct{ method, path, field string }
	calls := []call{
		{"POST", "/v1/keys", "expires_at"}, {"POST", "/v1/keys", "expires_in"},
		{"PATCH", "/v1/keys/" + id, "expires_at"},
		{"POST", "/v1/keys/" + id + "/refresh", "expires_at"}, {"POST", "/v1/keys/" + id + "/refresh", "expires_in"},
		{"POST", "/v1/keys/" + id + "/refresh", "overlap"},
	}
	before := e.version()
	for _, c := range calls {
		values := farLifetimes
		if c.field == "expires_at" {
			values = farTimes(time.Now())
		}
		for _, v := range values {
			body := map[string]any{c.field: v}
			if c.path == "/v1/keys" {
				body["label"], body["tier"], body["tenant"] = "far", "service", "org-acme"
			}
			for _, who := range []string{"alice", "console"} {
				got := e.callMalformed(who, c.method, c.path, body)
				if got.status != 400 || got.str("reason") != "bad_request" || !strings.Contains(got.str("error"), c.field) {
					t.Errorf("%s %s %s %s=%s: %d %s, want 400 naming %s", who, c.method, c.path, c.field, v, got.status, got.raw, c.field)
				}
			}
		}
	}
	if e.version() != before {
		t.Fatal("a refused call changed something")
	}
	// The bound itself is allowed, and every listing still encodes.
	e.want(e.call("alice", "POST", "/v1/keys", map[string]any{"label": "long", "tier": "service", "expires_in": "36500d"}), 201, "")
	e.want(e.call("alice", "POST", "/v1/keys", map[string]any{"label": "long", "tier": "service",
		"expires_at": time.Now().AddDate(99, 0, 0).Format(time.RFC3339)}), 201, "")
	for _, who := range []string{"alice", "carol-admin", "console"} {
		l := e.call(who, "GET", "/v1/keys", nil)
		e.want(l, 200, "")
		if len(ids(l)) == 0 {
			t.Errorf("%s's listing is empty: %s", who, l.raw)
		}
	}
}

// TestAnswerThatCannotBeEncodedIs500 (RT2-02): a key whose expiry no JSON
// time can write (stored before the range checks, or by hand) makes every
// answer that shows it a 500 with a JSON body, written before any byte:
// never a 2xx with an empty body. Answers that do not show it are
// unaffected.
func TestAnswerThatCannotBeEncodedIs500(t *testing.T) {
	e := newAPI(t, nil)
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	k, err := e.store.Create(context.Background(), store.NewKey{ID: "far", Digest: keys.DigestOf("far-value"), Start: "far-value",
		User: "u-alice", Tenant: "org-acme", Tier: "service", Label: "far", CreatedBy: "test", CreatedAt: time.Now(), ExpiresAt: far}, store.Limits{})
	if err != nil || k.ID != "far" {
		t.Fatal(err)
	}
	for _, c := range []struct{ who, method, path string }{
		{"alice", "GET", "/v1/keys"}, {"carol-admin", "GET", "/v1/keys"}, {"console", "GET", "/v1/keys?tenant=org-acme"},
		{"alice", "GET", "/v1/keys/far"}, {"alice", "PATCH", "/v1/keys/far"},
	} {
		var body any
		if c.method == "PATCH" {
			body = map[string]any{"label": "renamed"}
		}
		a := e.call(c.who, c.method, c.path, body)
		if a.status != 500 || a.str("reason") != "internal" || a.str("error") == "" {
			t.Errorf("%s %s %s: %d %q, want a 500 with a JSON body", c.who, c.method, c.path, a.status, a.raw)
		}
	}
	e.want(e.call("bob", "GET", "/v1/keys", nil), 200, "")
	if !strings.Contains(e.log.String(), `"msg":"key API answer not encoded"`) {
		t.Error("the failure is not logged")
	}
}

// TestDisabledBy (RT2-03): who disabled a key decides who may enable it.
// A key its owner disabled is enabled by whoever manages it; one a tenant
// admin or the platform disabled only by an admin of its tenant or the
// platform, through a JWT or a token page session alike. A later disable
// by someone lighter never makes it easier to enable; the answer says who
// disabled it, and the mirror keeps refusing it while it stays disabled.
func TestDisabledBy(t *testing.T) {
	e := newAPI(t, nil)
	by := map[string]string{"alice": "owner", "carol-admin": "tenant_admin", "console": "platform"}
	mayEnable := map[string]map[string]bool{ // disabler → enabler → may
		"alice":       {"alice": true, "carol-admin": true, "console": true},
		"carol-admin": {"alice": false, "carol-admin": true, "console": true},
		"console":     {"alice": false, "carol-admin": true, "console": true},
	}
	for _, disabler := range []string{"alice", "carol-admin", "console"} {
		for _, enabler := range []string{"alice", "carol-admin", "console"} {
			t.Run(disabler+" then "+enabler, func(t *testing.T) {
				e.t = t
				defer func() { e.t = t }()
				a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "org", "tier": "service", "tenant": "org-acme"})
				e.want(a, 201, "")
				id, key := a.str("id"), a.str("key")
				if a.body["disabled_by"] != nil {
					t.Fatalf("a new key: disabled_by %v", a.body["disabled_by"])
				}
				d := e.call(disabler, "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true})
				e.want(d, 200, "")
				if d.str("disabled_by") != by[disabler] {
					t.Fatalf("disabled_by %q, want %q", d.str("disabled_by"), by[disabler])
				}
				// The owner disabling again changes nothing of who did.
				if disabler != "alice" {
					again := e.call("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true})
					e.want(again, 200, "")
					if again.str("disabled_by") != by[disabler] {
						t.Fatalf("the owner's second disable made disabled_by %q", again.str("disabled_by"))
					}
				}
				en := e.call(enabler, "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false})
				if !mayEnable[disabler][enabler] {
					e.want(en, 403, "forbidden")
					e.wait(d)
					if k, _ := e.found(key); !k.Disabled {
						t.Fatal("the key was enabled")
					}
					// Through the token page the owner is refused the same way.
					s := e.open("u-alice", "")
					e.want(e.as(s, "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}, nil), 403, "forbidden")
					return
				}
				e.want(en, 200, "")
				if en.body["disabled_by"] != nil || en.str("state") != "active" {
					t.Fatalf("enabled: %s", en.raw)
				}
				e.wait(en)
				if k, ok := e.found(key); !ok || k.Disabled {
					t.Fatal("the mirror still has the key disabled")
				}
			})
		}
	}
	// A personal key the platform disabled: its owner may not enable it,
	// and no tenant admin manages it.
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "mine", "tier": "service"})
	id := a.str("id")
	e.want(e.call("console", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true}), 200, "")
	e.want(e.call("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}), 403, "forbidden")
	e.want(e.call("carol-admin", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}), 404, "not_found")
	e.want(e.call("console", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}), 200, "")
}

// jsonObject writes an object with the given members in order, names as
// given (repeats allowed): what a hand-written body may hold.
func jsonObject(members ...[2]any) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(m[0])
		value, _ := json.Marshal(m[1])
		b.Write(name)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return b.String()
}

// casings returns the other spellings of a field name a case-insensitive
// decoder would take for it.
func casings(name string) []string {
	title := strings.ToUpper(name[:1]) + name[1:]
	return []string{strings.ToUpper(name), title, strings.ReplaceAll(title, "_i", "_I")}
}

// TestJSONNamesAreExact (RT2-04, RT2-05): every body of every call matches
// field names exactly and refuses a repeated name: each field, spelled in
// another case, sent twice, or sent beside another spelling of itself, is a
// 400 naming it, and nothing changes. The reported bypass
// ({"user":"u-alice","USER":"u-bob"} with a management token) makes no
// key for anyone.
func TestJSONNamesAreExact(t *testing.T) {
	e := newAPI(t, nil)
	a := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "service", "tenant": "org-acme"})
	e.want(a, 201, "")
	id := a.str("id")
	future := time.Now().AddDate(0, 1, 0).UTC().Format(time.RFC3339)
	type member = [2]any
	for _, c := range []struct {
		who, method, path string
		base              []member // a valid body: the variants change one field
	}{
		{"console", "POST", "/v1/keys", []member{{"label", "x"}, {"description", "d"}, {"tier", "service"}, {"tenant", "org-acme"},
			{"user", "u-alice"}, {"id", "chosen-id"}, {"expires_in", "30d"}}},
		{"console", "POST", "/v1/keys", []member{{"label", "x"}, {"tier", "service"}, {"user", "u-alice"}, {"expires_at", future}}},
		{"alice", "PATCH", "/v1/keys/" + id, []member{{"label", "y"}, {"description", "d"}, {"expires_at", future}, {"disabled", false}}},
		{"alice", "POST", "/v1/keys/" + id + "/refresh", []member{{"expires_in", "30d"}, {"overlap", "1h"}}},
		{"alice", "POST", "/v1/keys/" + id + "/refresh", []member{{"expires_at", future}}},
		{"console", "POST", "/v1/keys/revoke", []member{{"user", "nobody-at-all"}, {"tenant", "org-globex"}}},
		{"console", "POST", "/v1/sessions", []member{{"user", "u-alice"}, {"tenant", "org-acme"}}},
		{"", "POST", "/v1/sessions/exchange", []member{{"code", "not-a-code"}}},
	} {
		for i, m := range c.base {
			name := m[0].(string)
			with := func(change func(rest []member) []member) string {
				rest := append([]member{}, c.base[:i]...)
				rest = append(rest, change(nil)...)
				return jsonObject(append(rest, c.base[i+1:]...)...)
			}
			variants := map[string]string{
				"twice":            with(func([]member) []member { return []member{m, m} }),
				"twice, differing": with(func([]member) []member { return []member{m, {name, "other"}} }),
			}
			for _, other := range casings(name) {
				if other == name {
					continue
				}
				variants["as "+other] = with(func([]member) []member { return []member{{other, m[1]}} })
				variants["beside "+other] = with(func([]member) []member { return []member{m, {other, m[1]}} })
			}
			for variant, body := range variants {
				before := e.version()
				got := e.callMalformed(c.who, c.method, c.path, body)
				if got.status != 400 || got.str("reason") != "bad_request" || !strings.Contains(strings.ToLower(got.str("error")), strings.ToLower(name)) {
					t.Errorf("%s %s %s, %s %s: %d %s, want 400 naming the field", c.who, c.method, c.path, name, variant, got.status, got.raw)
				}
				if e.version() != before {
					t.Errorf("%s %s, %s %s: the refused call changed something", c.method, c.path, name, variant)
				}
			}
		}
	}
	// The report: a backend that checked body["user"] is not bypassed.
	got := e.callMalformed("console", "POST", "/v1/keys", `{"label":"x","tier":"service","user":"u-alice","USER":"u-bob"}`)
	e.want(got, 400, "bad_request")
	if l := e.call("console", "GET", "/v1/keys?user=u-bob", nil); len(ids(l)) != 0 {
		t.Fatalf("a key was made for u-bob: %s", l.raw)
	}
}

// TestChosenIDs (RT2-06): a self-service user (JWT or token page session)
// may not choose a key's id, free or taken, with the same answer either
// way, so create is no oracle and no user squats an id the platform plans
// to use; the platform may. Every call naming another user's key by id
// answers exactly as for an id nobody holds.
func TestChosenIDs(t *testing.T) {
	e := newAPI(t, nil)
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "p", "tier": "service", "user": "ext-1", "id": "planned-1"}), 201, "")
	a := e.call("bob", "POST", "/v1/keys", map[string]any{"label": "b", "tier": "service"})
	e.want(a, 201, "")
	bobs := a.str("id")
	s := e.open("u-alice", "")
	before := e.version()
	var answers []string
	for _, id := range []string{"planned-1", bobs, "free-id-1", "planned-2"} {
		body := map[string]any{"label": "x", "tier": "service", "id": id}
		for _, got := range []answer{e.call("alice", "POST", "/v1/keys", body), e.as(s, "POST", "/v1/keys", body, nil)} {
			e.want(got, 403, "forbidden")
			answers = append(answers, got.raw)
		}
	}
	for _, raw := range answers[1:] {
		if raw != answers[0] {
			t.Fatalf("answers differ by whether the id is taken: %s and %s", answers[0], raw)
		}
	}
	if e.version() != before {
		t.Fatal("a refused create changed something")
	}
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "p", "tier": "service", "user": "ext-2", "id": "planned-2"}), 201, "")
	e.want(e.call("console", "POST", "/v1/keys", map[string]any{"label": "p", "tier": "service", "user": "ext-2", "id": "planned-2"}), 409, "conflict")

	for _, c := range []struct {
		method, suffix string
		body           any
	}{
		{"GET", "", nil}, {"GET", "/usage", nil}, {"PATCH", "", map[string]any{"label": "mine"}},
		{"PATCH", "", map[string]any{"disabled": true}}, {"POST", "/refresh", nil}, {"DELETE", "", nil},
	} {
		taken := e.call("alice", c.method, "/v1/keys/"+bobs+c.suffix, c.body)
		free := e.call("alice", c.method, "/v1/keys/nobody-holds-this"+c.suffix, c.body)
		if taken.status != http.StatusNotFound || taken.raw != free.raw {
			t.Errorf("%s %s of bob's key: %d %s; of no key: %d %s", c.method, c.suffix, taken.status, taken.raw, free.status, free.raw)
		}
	}
	if fmt.Sprint(e.call("bob", "GET", "/v1/keys/"+bobs, nil).status) != "200" {
		t.Fatal("bob lost his key")
	}
}

// TestUndeclaredMethods: a known path asked with a method it does not take
// is a 405 whose Allow header names those it does (what schemathesis's
// unsupported_method check found: a 404 before); an unknown path is a 404.
func TestUndeclaredMethods(t *testing.T) {
	e := newAPI(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"TRACE", "/v1/status", "GET, HEAD"},
		{"POST", "/v1/status", "GET, HEAD"},
		{"PUT", "/v1/keys", "GET, HEAD, POST"},
		{"DELETE", "/v1/keys", "GET, HEAD, POST"},
		{"PUT", "/v1/keys/some-id", "DELETE, GET, HEAD, PATCH"},
		{"GET", "/v1/sessions", "POST"},
		{"OPTIONS", "/v1/keys/revoke", "POST"},
		{"TRACE", "/v1/sessions/exchange", "POST"},
		{"DELETE", "/v1/keys/some-id/usage", "GET, HEAD"},
		{"PATCH", "/v1/openapi.json", "GET, HEAD"},
	} {
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		req.Header.Set("Authorization", e.token("console"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Reason string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != c.allow || body.Reason != "method_not_allowed" {
			t.Errorf("%s %s: %d Allow %q %q, want 405 Allow %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), body.Reason, c.allow)
		}
	}
	resp, err := http.Get(e.srv.URL + "/v1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("an unknown path: %d", resp.StatusCode)
	}
}
