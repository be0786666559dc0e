package api_test

import (
	"fmt"
	"strings"
	"testing"
)

func (e *apiEnv) mustCall(who, method, path string, body any, status int) answer {
	e.t.Helper()
	a := e.call(who, method, path, body)
	if a.status != status {
		e.t.Fatalf("%s %s %s: %d %s, want %d", who, method, path, a.status, a.raw, status)
	}
	return a
}

func tenantIDs(a answer) []string {
	var out []string
	list, _ := a.body["tenants"].([]any)
	for _, t := range list {
		out = append(out, t.(map[string]any)["id"].(string))
	}
	return out
}

// TestDirectoryAPI: the platform makes and changes store tenants, their
// members (one, or the whole list) and user states (CONTRACT §10); the
// policy's tenants are read-only beside them; names stay apart (a store
// tenant never takes a policy tenant's name, another store tenant's name or
// a user's id); a tenant's key managers read it and its members, a user
// their own state, everyone else learns nothing; a user on a platform row
// is 403; every answer matches openapi.json and a refused call changes
// nothing.
func TestDirectoryAPI(t *testing.T) {
	e := newAPI(t, nil)
	a := e.mustCall("console", "PUT", "/v1/tenants/org-initech", map[string]any{"display_name": "Initech", "aliases": []string{"initech"}}, 201)
	if a.str("source") != "store" || a.str("display_name") != "Initech" || a.body["version"] == nil {
		t.Fatalf("created %s", a.raw)
	}
	a = e.mustCall("console", "PUT", "/v1/tenants/org-initech", map[string]any{"disabled": true}, 200)
	if a.str("display_name") != "Initech" || a.body["disabled"] != true {
		t.Fatalf("a change of one field: %s", a.raw)
	}
	e.mustCall("console", "PUT", "/v1/tenants/org-initech", map[string]any{"disabled": false}, 200)
	e.mustCall("console", "PUT", "/v1/tenants/org-hooli", nil, 201)

	// Listing: the policy's tenants and the store's, paged.
	seen, token := []string{}, ""
	for range 10 {
		path := "/v1/tenants?page_size=2"
		if token != "" {
			path += "&page_token=" + token
		}
		l := e.mustCall("console", "GET", path, nil, 200)
		seen = append(seen, tenantIDs(l)...)
		if token = l.str("next_page_token"); token == "" {
			break
		}
	}
	if strings.Join(seen, ",") != "org-acme,org-globex,org-hooli,org-initech" {
		t.Fatalf("listed %v", seen)
	}
	if g := e.mustCall("console", "GET", "/v1/tenants/org-acme", nil, 200); g.str("source") != "policy" || g.body["created_at"] != nil {
		t.Fatalf("a policy tenant: %s", g.raw)
	}

	before := e.version()
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		reason       string
	}{
		{"PUT", "/v1/tenants/org-acme", map[string]any{"display_name": "x"}, 409, "conflict"},
		{"DELETE", "/v1/tenants/org-acme", nil, 409, "conflict"},
		{"PUT", "/v1/tenants/org-acme/members/u-dave", nil, 409, "conflict"},
		{"PUT", "/v1/tenants/org-acme/members", map[string]any{"members": []any{}}, 409, "conflict"},
		{"PUT", "/v1/tenants/u-alice", nil, 409, "conflict"},                                                  // a policy member's id
		{"PUT", "/v1/tenants/org-x", map[string]any{"aliases": []string{"org-globex"}}, 409, "conflict"},      // a policy tenant's name
		{"PUT", "/v1/tenants/org-x", map[string]any{"aliases": []string{"initech"}}, 409, "conflict"},         // another store tenant's alias
		{"PUT", "/v1/tenants/initech", nil, 409, "conflict"},                                                  // as id
		{"PUT", "/v1/tenants/org-initech/members/org-hooli", nil, 409, "conflict"},                            // a user named like a tenant
		{"PUT", "/v1/tenants/org-initech/members/initech", nil, 409, "conflict"},                              // like an alias
		{"PUT", "/v1/users/org-acme", map[string]any{"disabled": true}, 409, "conflict"},                      // a user named like a tenant
		{"PUT", "/v1/tenants/org-initech/members/u-dave", map[string]any{"role": "boss"}, 400, "bad_request"}, // not a role
		{"PUT", "/v1/tenants/org x", nil, 400, "bad_request"},                                                 // not an id
		{"PUT", "/v1/tenants/org-x", map[string]any{"aliases": []string{"a b"}}, 400, "bad_request"},          // not an alias
		{"PUT", "/v1/tenants/org-x", map[string]any{"aliases": []string{"org-x"}}, 400, "bad_request"},        // its own id
		{"PUT", "/v1/tenants/org-nobody/members/u-dave", nil, 404, "not_found"},
		{"DELETE", "/v1/tenants/org-initech/members/u-nobody", nil, 404, "not_found"},
		{"DELETE", "/v1/tenants/org-nobody", nil, 404, "not_found"},
		{"PUT", "/v1/users/u-dave", map[string]any{}, 400, "bad_request"},
	} {
		var got answer
		if strings.Contains(c.path, " ") || c.status == 400 {
			got = e.callMalformed("console", c.method, strings.ReplaceAll(c.path, " ", "%20"), c.body)
		} else {
			got = e.call("console", c.method, c.path, c.body)
		}
		if got.status != c.status || got.str("reason") != c.reason {
			t.Errorf("%s %s %v: %d %s, want %d %s", c.method, c.path, c.body, got.status, got.raw, c.status, c.reason)
		}
	}
	if e.version() != before {
		t.Fatal("a refused call changed something")
	}

	// Members: one at a time (the default role, then another), then read
	// by who may.
	m := e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-alice", nil, 201)
	if m.str("role") != "developer" {
		t.Fatalf("default role: %s", m.raw)
	}
	e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-alice", map[string]any{"role": "member"}, 200)
	e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-dave", map[string]any{"role": "admin"}, 201)
	e.mustCall("console", "GET", "/v1/tenants/org-initech/members", nil, 200)
	for who, status := range map[string]int{"alice": 404, "bob": 404, "carol-admin": 404} {
		e.mustCall(who, "GET", "/v1/tenants/org-initech/members", nil, status)
		e.mustCall(who, "GET", "/v1/tenants/org-initech", nil, status)
	}
	e.mustCall("carol-admin", "GET", "/v1/tenants/org-acme/members", nil, 200) // an admin of org-acme (policy role and group)
	u := e.mustCall("alice", "GET", "/v1/users/u-alice", nil, 200)
	if !strings.Contains(u.raw, `{"id":"org-acme","role":"developer"}`) || !strings.Contains(u.raw, `{"id":"org-initech","role":"member"}`) {
		t.Fatalf("alice's own state: %s", u.raw)
	}
	e.mustCall("bob", "GET", "/v1/users/u-alice", nil, 404)

	// A self-service user on a platform row is 403.
	for _, c := range []struct{ method, path string }{
		{"PUT", "/v1/tenants/org-mine"}, {"DELETE", "/v1/tenants/org-initech"}, {"GET", "/v1/tenants"},
		{"PUT", "/v1/tenants/org-initech/members/u-alice"}, {"DELETE", "/v1/tenants/org-initech/members/u-alice"},
		{"PUT", "/v1/users/u-alice"},
	} {
		var body any
		if c.method == "PUT" && strings.HasPrefix(c.path, "/v1/users") {
			body = map[string]any{"disabled": false}
		}
		e.mustCall("alice", c.method, c.path, body, 403)
	}

	// Bulk: the whole list in one change; over 10,000 or a repeated user is
	// a 400 naming the entry.
	var list []map[string]any
	for i := range 10_000 {
		list = append(list, map[string]any{"user": fmt.Sprintf("u-%05d", i)})
	}
	list[0]["role"] = "member"
	r := e.mustCall("console", "PUT", "/v1/tenants/org-hooli/members", map[string]any{"members": list}, 200)
	if r.body["added"] != float64(10_000) || r.body["removed"] != float64(0) {
		t.Fatalf("bulk: %s", r.raw)
	}
	before = e.version()
	over := e.callMalformed("console", "PUT", "/v1/tenants/org-hooli/members", map[string]any{"members": append(list, map[string]any{"user": "u-10000"})})
	dup := e.callMalformed("console", "PUT", "/v1/tenants/org-hooli/members", map[string]any{"members": append(list[:5:5], map[string]any{"user": "u-00001"})})
	if over.status != 400 || !strings.Contains(over.str("error"), "at most 10000") || dup.status != 400 || !strings.Contains(dup.str("error"), "members[5].user") {
		t.Fatalf("over the bound: %s; a repeat: %s", over.raw, dup.raw)
	}
	if e.version() != before {
		t.Fatal("a refused bulk replace changed something")
	}
	r = e.mustCall("console", "PUT", "/v1/tenants/org-hooli/members", map[string]any{"members": list[9_998:]}, 200)
	if r.body["removed"] != float64(9_998) || r.body["added"] != float64(0) {
		t.Fatalf("bulk shrink: %s", r.raw)
	}
}

// TestKeysFollowTheDirectory: the key API reads the directory live. A
// member creates a key for a store tenant; a manage_keys role makes its
// holder a tenant admin through a JWT and a token page session alike
// (RT2-07); ending the membership refuses create, refresh and enable for
// it; a disabled user's JWTs and sessions are 403 user_disabled until
// enabled; deleting the tenant deletes its keys.
func TestKeysFollowTheDirectory(t *testing.T) {
	e := newAPI(t, nil)
	e.mustCall("console", "PUT", "/v1/tenants/org-initech", nil, 201)
	e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-alice", nil, 201)
	a := e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "initech", "tier": "service", "tenant": "org-initech"}, 201)
	id := a.str("id")
	e.mustCall("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true}, 200)
	e.mustCall("bob", "GET", "/v1/keys/"+id, nil, 404)

	// bob becomes initech's admin: he manages alice's key, as JWT and session.
	v := e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-bob", map[string]any{"role": "admin"}, 201)
	e.wait(v)
	e.mustCall("bob", "GET", "/v1/keys/"+id, nil, 200)
	s := e.open("u-bob", "org-initech")
	if l := e.as(s, "GET", "/v1/keys?tenant=org-initech", nil, nil); !has(ids(l), id) {
		t.Fatalf("bob's session does not list initech's keys: %s", l.raw)
	}
	if cur := e.as(s, "GET", "/v1/sessions/current", nil, nil); !strings.Contains(cur.raw, "org-initech") {
		t.Fatalf("bob's session does not offer initech: %s", cur.raw)
	}
	// carol, an admin of org-acme only, still may not.
	e.mustCall("carol-admin", "GET", "/v1/keys/"+id, nil, 404)

	// alice leaves: her key stays hers, but may not be refreshed or enabled.
	v = e.mustCall("console", "DELETE", "/v1/tenants/org-initech/members/u-alice", nil, 200)
	e.wait(v)
	e.mustCall("alice", "POST", "/v1/keys/"+id+"/refresh", nil, 403)
	e.mustCall("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}, 403)
	e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "tenant": "org-initech"}, 403)
	e.mustCall("alice", "GET", "/v1/keys/"+id, nil, 200)
	v = e.mustCall("console", "PUT", "/v1/tenants/org-initech/members/u-alice", nil, 201)
	e.wait(v)
	e.mustCall("alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false}, 200)

	// A disabled user: their JWT and session are refused, then restored.
	sa := e.open("u-alice", "")
	v = e.mustCall("console", "PUT", "/v1/users/u-alice", map[string]any{"disabled": true}, 200)
	if v.body["disabled"] != true {
		t.Fatalf("disable: %s", v.raw)
	}
	e.wait(v)
	e.want(e.call("alice", "GET", "/v1/keys", nil), 403, "user_disabled")
	e.want(e.as(sa, "GET", "/v1/keys", nil, nil), 403, "user_disabled")
	v = e.mustCall("console", "PUT", "/v1/users/u-alice", map[string]any{"disabled": false}, 200)
	e.wait(v)
	e.mustCall("alice", "GET", "/v1/keys", nil, 200)

	// Deleting the tenant deletes its keys.
	d := e.mustCall("console", "DELETE", "/v1/tenants/org-initech", nil, 200)
	if d.body["revoked"] != float64(1) {
		t.Fatalf("delete: %s", d.raw)
	}
	e.mustCall("alice", "GET", "/v1/keys/"+id, nil, 404)
	e.mustCall("console", "GET", "/v1/tenants/org-initech", nil, 404)
}

// TestDirectoryOff: a policy that keeps no directory in the store answers
// every directory call 404, saying so.
func TestDirectoryOff(t *testing.T) {
	e := newAPI(t, func(p string) string { return strings.Replace(p, "  store: true ", "  store: false ", 1) })
	for _, c := range []struct{ method, path string }{{"GET", "/v1/tenants"}, {"PUT", "/v1/tenants/org-x"}, {"GET", "/v1/users/u-alice"}} {
		got := e.call("console", c.method, c.path, nil)
		if got.status != 404 || !strings.Contains(got.str("error"), "directory.store") {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.raw)
		}
	}
}

// TestTenantAdminManagesAMembersKeys: a tenant admin lists and deletes
// all the keys of one member bound to their tenant (the token page's
// member filter and "delete all keys of a member"), never the member's
// keys elsewhere; anyone else naming another user is 403.
func TestTenantAdminManagesAMembersKeys(t *testing.T) {
	e := newAPI(t, nil)
	org := e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "org", "tier": "service", "tenant": "org-acme"}, 201).str("id")
	e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "org 2", "tier": "service", "tenant": "org-acme"}, 201)
	personal := e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "mine", "tier": "service"}, 201).str("id")
	l := e.mustCall("carol-admin", "GET", "/v1/keys?tenant=org-acme&user=u-alice", nil, 200)
	if got := ids(l); len(got) != 2 || !has(got, org) || has(got, personal) {
		t.Fatalf("carol's member filter: %v", got)
	}
	e.mustCall("carol-admin", "GET", "/v1/keys?user=u-alice", nil, 403)
	e.mustCall("bob", "GET", "/v1/keys?tenant=org-acme&user=u-alice", nil, 403)
	e.mustCall("bob", "POST", "/v1/keys/revoke", map[string]any{"tenant": "org-acme", "user": "u-alice"}, 403)
	e.mustCall("carol-admin", "POST", "/v1/keys/revoke", map[string]any{"user": "u-alice"}, 403)
	r := e.mustCall("carol-admin", "POST", "/v1/keys/revoke", map[string]any{"tenant": "org-acme", "user": "u-alice"}, 200)
	if r.body["revoked"] != float64(2) {
		t.Fatalf("revoked %v", r.body["revoked"])
	}
	e.mustCall("alice", "GET", "/v1/keys/"+personal, nil, 200)
	e.mustCall("alice", "GET", "/v1/keys/"+org, nil, 404)
}

// TestRateLimitsThroughTheAPI (CONTRACT §12): a tenant's plan through
// PUT /v1/tenants/{tenant}; a key's own rate_limit given, changed and
// removed by the platform or an admin of its tenant (never by a user for
// their own key), reaching the mirror; bad limits and plans are 400.
func TestRateLimitsThroughTheAPI(t *testing.T) {
	e := newAPI(t, nil)
	tn := e.mustCall("console", "PUT", "/v1/tenants/org-initech", map[string]any{"plan": "pro"}, 201)
	if tn.str("plan") != "pro" {
		t.Fatalf("plan: %s", tn.raw)
	}
	if g := e.mustCall("console", "GET", "/v1/tenants/org-acme", nil, 200); g.str("plan") != "pro" {
		t.Fatalf("a policy tenant's plan: %s", g.raw)
	}
	e.want(e.callMalformed("console", "PUT", "/v1/tenants/org-initech", map[string]any{"plan": "gold"}), 400, "bad_request")
	if g := e.mustCall("console", "PUT", "/v1/tenants/org-initech", map[string]any{"plan": ""}, 200); g.body["plan"] != nil {
		t.Fatalf("back to the default plan: %s", g.raw)
	}

	k := e.mustCall("console", "POST", "/v1/keys", map[string]any{"label": "fast", "tier": "service", "user": "u-alice",
		"rate_limit": map[string]any{"requests_per_unit": 10, "unit": "second"}}, 201)
	if !strings.Contains(k.raw, `"rate_limit":{"requests_per_unit":10,"unit":"second"}`) {
		t.Fatalf("created: %s", k.raw)
	}
	e.wait(k)
	if got, _ := e.found(k.str("key")); got.Limit.PerUnit != 10 || got.Limit.Unit.String() != "SECOND" {
		t.Fatalf("mirror: %+v", got.Limit)
	}
	lim := map[string]any{"requests_per_unit": 5, "unit": "minute"}
	e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "rate_limit": lim}, 403)
	e.mustCall("alice", "PATCH", "/v1/keys/"+k.str("id"), map[string]any{"rate_limit": lim}, 403)
	e.mustCall("alice", "PATCH", "/v1/keys/"+k.str("id"), map[string]any{"rate_limit": nil}, 403)
	org := e.mustCall("alice", "POST", "/v1/keys", map[string]any{"label": "org", "tier": "service", "tenant": "org-acme"}, 201)
	if org.body["rate_limit"] != nil {
		t.Fatalf("a key without its own limit: %s", org.raw)
	}
	p := e.mustCall("carol-admin", "PATCH", "/v1/keys/"+org.str("id"), map[string]any{"rate_limit": lim}, 200)
	if !strings.Contains(p.raw, `"rate_limit":{"requests_per_unit":5,"unit":"minute"}`) {
		t.Fatalf("set by the tenant admin: %s", p.raw)
	}
	p = e.mustCall("carol-admin", "PATCH", "/v1/keys/"+org.str("id"), map[string]any{"rate_limit": nil}, 200)
	if p.body["rate_limit"] != nil {
		t.Fatalf("removed: %s", p.raw)
	}
	before := e.version()
	for _, bad := range []map[string]any{
		{"requests_per_unit": 0, "unit": "minute"}, {"requests_per_unit": 4294967296, "unit": "minute"},
		{"requests_per_unit": 5, "unit": "fortnight"}, {"requests_per_unit": 5},
	} {
		e.want(e.callMalformed("console", "PATCH", "/v1/keys/"+org.str("id"), map[string]any{"rate_limit": bad}), 400, "bad_request")
	}
	if e.version() != before {
		t.Fatal("a refused change took a version")
	}
}

// TestPageTokensAreChecked: a page token that is not one the API gave (any
// bytes, base64url) is a 400 on every listing, never a store error (what
// schemathesis found: bytes that are not UTF-8 reached PostgreSQL).
func TestPageTokensAreChecked(t *testing.T) {
	e := newAPI(t, nil)
	e.mustCall("console", "PUT", "/v1/tenants/org-initech", nil, 201)
	for _, tok := range []string{"tA", "nLc", "7LdP", "AAEC", "_w"} { // 0xb4, 0x9c…, 0xec 0xb7 0x4f, control bytes, 0xff
		for _, path := range []string{"/v1/tenants?page_token=" + tok, "/v1/tenants/org-initech/members?page_token=" + tok, "/v1/keys?page_token=" + tok} {
			e.want(e.callMalformed("console", "GET", path, nil), 400, "bad_request")
		}
	}
}
