package api_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

// withoutCredits takes the self-service example's credits block out.
func withoutCredits(p string) string {
	i := strings.Index(p, "credits:\n")
	j := strings.Index(p[i:], "\n\n")
	p = p[:i] + p[i+j+2:]
	return regexp.MustCompile(`(?m)^  credits_remaining: .*\n`).ReplaceAllString(p, "")
}

// TestWallets: the platform creates a wallet, sets and clears its refill,
// grants (once per idempotency key) and deletes it; the tenant's key
// managers and, for a personal wallet, its user read it; nobody else
// learns it exists; a self-service user changes nothing.
func TestWallets(t *testing.T) {
	e := newAPI(t, nil)
	e.want(e.call("console", "GET", "/v1/wallets/org-acme", nil), 404, "not_found")
	a := e.call("console", "PUT", "/v1/wallets/org-acme", nil)
	e.want(a, 201, "")
	if a.body["balance"] != 0.0 || a.body["refill"] != nil || a.body["next_refill_at"] != nil || a.body["version"] == nil {
		t.Fatalf("a new wallet: %s", a.raw)
	}
	a = e.call("console", "PUT", "/v1/wallets/org-acme", map[string]any{"refill": map[string]any{"amount": 500, "every": "month", "day": 5}})
	e.want(a, 200, "")
	if a.body["balance"] != 0.0 || a.str("next_refill_at") == "" {
		t.Fatalf("a refill set grants nothing at once, and is due: %s", a.raw)
	}
	e.want(e.call("console", "PUT", "/v1/wallets/org-acme", map[string]any{}), 200, "") // no refill sent: kept
	if a := e.call("console", "GET", "/v1/wallets/org-acme", nil); a.body["refill"] == nil {
		t.Fatalf("an empty PUT cleared the refill: %s", a.raw)
	}

	g := e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 100, "idempotency_key": "order-1", "note": "first"})
	e.want(g, 200, "")
	if g.body["balance"] != 100.0 {
		t.Fatalf("grant: %s", g.raw)
	}
	again := e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 100, "idempotency_key": "order-1", "note": "first"})
	if again.raw != g.raw {
		t.Fatalf("a retried grant answered %s, the first %s", again.raw, g.raw)
	}
	e.want(e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 101, "idempotency_key": "order-1", "note": "first"}), 409, "conflict")
	e.want(e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": -30, "idempotency_key": "refund-1"}), 200, "")

	// Readers: the platform, the tenant's key managers (carol's role
	// manages keys), nobody else; a personal wallet's user.
	for who, status := range map[string]int{"console": 200, "carol-admin": 200, "alice": 404, "bob": 404} {
		a := e.call(who, "GET", "/v1/wallets/org-acme", nil)
		e.want(a, status, "")
		if status == 200 && (a.body["balance"] != 70.0 || a.body["held"] != 0.0 || a.body["spent_today"] != 0.0) {
			t.Fatalf("%s reads %s", who, a.raw)
		}
	}
	e.want(e.call("console", "PUT", "/v1/wallets/u-alice", nil), 201, "")
	for who, status := range map[string]int{"alice": 200, "bob": 404, "carol-admin": 404} {
		e.want(e.call(who, "GET", "/v1/wallets/u-alice", nil), status, "")
	}

	// A self-service user changes no wallet, not even their own.
	for _, who := range []string{"alice", "carol-admin"} {
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PUT", "/v1/wallets/org-acme", nil},
			{"PUT", "/v1/wallets/u-alice", nil},
			{"POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 5, "idempotency_key": "mine"}},
			{"POST", "/v1/wallets/u-alice/grants", map[string]any{"units": 5, "idempotency_key": "mine"}},
			{"DELETE", "/v1/wallets/org-acme", nil},
			{"DELETE", "/v1/wallets/u-alice", nil},
		} {
			if a := e.call(who, c.method, c.path, c.body); a.status != 403 || a.str("reason") != "forbidden" {
				t.Fatalf("%s %s %s: %d %s, want 403 forbidden", who, c.method, c.path, a.status, a.raw)
			}
		}
	}
	if a := e.call("console", "GET", "/v1/wallets/org-acme", nil); a.body["balance"] != 70.0 {
		t.Fatalf("a refused call changed the wallet: %s", a.raw)
	}

	d := e.call("console", "DELETE", "/v1/wallets/org-acme", nil)
	e.want(d, 200, "")
	e.want(e.call("console", "GET", "/v1/wallets/org-acme", nil), 404, "not_found")
	e.want(e.call("console", "DELETE", "/v1/wallets/org-acme", nil), 404, "not_found")
	e.want(e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 1, "idempotency_key": "late"}), 404, "not_found")
	// A new wallet after a deleted one starts at zero.
	e.want(e.call("console", "PUT", "/v1/wallets/org-acme", nil), 201, "")
	if a := e.call("console", "GET", "/v1/wallets/org-acme", nil); a.body["balance"] != 0.0 || a.body["refill"] != nil {
		t.Fatalf("a wallet made again: %s", a.raw)
	}
}

// TestWalletRequestsRefused: each malformed wallet call is 400 naming the
// field, and changes nothing; without a credits block wallets are 404.
func TestWalletRequestsRefused(t *testing.T) {
	e := newAPI(t, nil)
	e.want(e.call("console", "PUT", "/v1/wallets/org-acme", nil), 201, "")
	for _, c := range []struct {
		path, body, field string
	}{
		{"/v1/wallets/org-acme", `{"refill":{"amount":0,"every":"day"}}`, "refill.amount"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":1000000000001,"every":"day"}}`, "refill.amount"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5,"every":"week"}}`, "refill.every"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5,"every":"month"}}`, "refill.day"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5,"every":"month","day":29}}`, "refill.day"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5,"every":"day","day":3}}`, "refill.day"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5,"every":"day","extra":1}}`, "extra"},
		{"/v1/wallets/org-acme", `{"refill":{"amount":5.5,"every":"day"}}`, "amount"},
		{"/v1/wallets/org-acme", `[]`, "JSON object"},
		{"/v1/wallets/org-acme", `{"refil":null}`, "refil"},
		{"/v1/wallets/org%20acme", `{}`, "tenant"},
		{"/v1/wallets/org-acme/grants", `{"units":0,"idempotency_key":"k"}`, "units"},
		{"/v1/wallets/org-acme/grants", `{"units":1000000000001,"idempotency_key":"k"}`, "units"},
		{"/v1/wallets/org-acme/grants", `{"units":-1000000000001,"idempotency_key":"k"}`, "units"},
		{"/v1/wallets/org-acme/grants", `{"units":1.5,"idempotency_key":"k"}`, "units"},
		{"/v1/wallets/org-acme/grants", `{"units":"1","idempotency_key":"k"}`, "units"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":""}`, "idempotency_key"},
		{"/v1/wallets/org-acme/grants", `{"units":1}`, "idempotency_key"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"` + strings.Repeat("k", 129) + `"}`, "idempotency_key"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"tab\there"}`, "idempotency_key"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"k\u00e9"}`, "idempotency_key"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"k","note":"` + strings.Repeat("n", 201) + `"}`, "note"},
		{"/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"k","units":2}`, "units"},
		{"/v1/wallets/org-acme/grants", ``, "empty"},
	} {
		method := "PUT"
		if strings.HasSuffix(c.path, "/grants") {
			method = "POST"
		}
		a := e.callMalformed("console", method, c.path, c.body)
		if a.status != 400 || a.str("reason") != "bad_request" || !strings.Contains(a.str("error"), c.field) {
			t.Errorf("%s %s: %d %s, want 400 naming %s", c.path, c.body, a.status, a.raw, c.field)
		}
	}
	if a := e.call("console", "GET", "/v1/wallets/org-acme", nil); a.body["balance"] != 0.0 || a.body["refill"] != nil {
		t.Fatalf("a refused call changed the wallet: %s", a.raw)
	}
	// The refused grants did not use their key: it grants now.
	e.want(e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 1, "idempotency_key": "k"}), 200, "")

	off := newAPI(t, withoutCredits)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		if a := off.call("console", m, "/v1/wallets/org-acme", nil); a.status != 404 || !strings.Contains(a.str("error"), "meters nothing") {
			t.Fatalf("%s without credits: %d %s", m, a.status, a.raw)
		}
	}
}

// TestUsageRows: GET /v1/usage sums checks and units by the columns asked
// for; the platform reads every row, a user their own, a tenant's key
// managers the tenant's; a filter naming what the caller may not read is
// 403, a malformed one 400.
func TestUsageRows(t *testing.T) {
	e := newAPI(t, nil)
	mine := e.call("alice", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "admin", "tenant": "org-acme"})
	e.want(mine, 201, "")
	carols := e.call("carol-admin", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "admin", "tenant": "org-acme"})
	e.want(carols, 201, "")
	bobs := e.call("bob", "POST", "/v1/keys", map[string]any{"label": "k", "tier": "service"})
	e.want(bobs, 201, "")
	alice, carol, bob := mine.str("id"), carols.str("id"), bobs.str("id")

	u := store.NewUsage(e.store.Pool())
	now := time.Now().UTC()
	yesterday := now.AddDate(0, 0, -1)
	for range 3 {
		u.RecordDetail("org-acme", "u-alice", alice, true, 10, now)
	}
	u.RecordDetail("org-acme", "u-alice", alice, false, 0, yesterday)
	u.RecordDetail("u-alice", "u-alice", alice, true, 1, now)
	u.RecordDetail("org-acme", "u-carol", carol, true, 1, now)
	u.RecordDetail("org-acme", "u-carol", carol, false, 0, now)
	u.RecordDetail("u-bob", "u-bob", bob, true, 1, now)
	if _, err := u.Flush(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	today, yday := now.Format(time.DateOnly), yesterday.Format(time.DateOnly)
	rows := func(who, query string) string {
		t.Helper()
		a := e.call(who, "GET", "/v1/usage?"+query, nil)
		e.want(a, 200, "")
		var out []string
		for _, r := range a.body["rows"].([]any) {
			m := r.(map[string]any)
			out = append(out, fmt.Sprintf("%v|%v|%v|%v %v/%v/%v", m["date"], m["tenant"], m["user"], m["key"], m["allowed"], m["denied"], m["units"]))
		}
		return strings.Join(out, "; ")
	}
	for _, c := range []struct{ who, query, want string }{
		{"console", "", fmt.Sprintf("%s|<nil>|<nil>|<nil> 0/1/0; %s|<nil>|<nil>|<nil> 6/1/33", yday, today)},
		{"console", "group_by=tenant", "<nil>|org-acme|<nil>|<nil> 4/2/31; <nil>|u-alice|<nil>|<nil> 1/0/1; <nil>|u-bob|<nil>|<nil> 1/0/1"},
		{"console", "group_by=", "<nil>|<nil>|<nil>|<nil> 6/2/33"},
		{"console", "group_by=user,tenant&from=" + today, "<nil>|org-acme|u-alice|<nil> 3/0/30; <nil>|org-acme|u-carol|<nil> 1/1/1; <nil>|u-alice|u-alice|<nil> 1/0/1; <nil>|u-bob|u-bob|<nil> 1/0/1"},
		{"console", "to=" + yday, fmt.Sprintf("%s|<nil>|<nil>|<nil> 0/1/0", yday)},
		{"console", "key=" + carol + "&group_by=key", fmt.Sprintf("<nil>|<nil>|<nil>|%s 1/1/1", carol)},
		// alice: her own rows, in any tenant; in org-acme (a member, not
		// its key manager) still only hers.
		{"alice", "group_by=tenant", "<nil>|org-acme|<nil>|<nil> 3/1/30; <nil>|u-alice|<nil>|<nil> 1/0/1"},
		{"alice", "tenant=org-acme&group_by=user", "<nil>|<nil>|u-alice|<nil> 3/1/30"},
		{"alice", "tenant=u-alice&group_by=tenant", "<nil>|u-alice|<nil>|<nil> 1/0/1"},
		{"alice", "key=" + alice + "&group_by=", "<nil>|<nil>|<nil>|<nil> 4/1/31"},
		// carol manages org-acme's keys: every member's rows there.
		{"carol-admin", "tenant=org-acme&group_by=user", "<nil>|<nil>|u-alice|<nil> 3/1/30; <nil>|<nil>|u-carol|<nil> 1/1/1"},
		{"carol-admin", "tenant=org-acme&user=u-alice&key=" + alice + "&group_by=", "<nil>|<nil>|<nil>|<nil> 3/1/30"},
		{"carol-admin", "group_by=user", "<nil>|<nil>|u-carol|<nil> 1/1/1"},
		{"bob", "group_by=", "<nil>|<nil>|<nil>|<nil> 1/0/1"},
	} {
		if got := rows(c.who, c.query); got != c.want {
			t.Errorf("%s ?%s:\n got %s\nwant %s", c.who, c.query, got, c.want)
		}
	}
	for _, c := range []struct{ who, query string }{
		{"alice", "user=u-carol"},
		{"alice", "tenant=org-globex"},
		{"alice", "key=" + carol},
		{"alice", "tenant=org-acme&key=" + carol},
		{"bob", "tenant=org-acme"},
		{"bob", "tenant=u-alice"},
		{"carol-admin", "key=" + alice}, // without tenant=: only her own
		{"carol-admin", "tenant=org-acme&key=" + bob},
	} {
		if a := e.call(c.who, "GET", "/v1/usage?"+c.query, nil); a.status != 403 || a.str("reason") != "forbidden" {
			t.Errorf("%s ?%s: %d %s, want 403", c.who, c.query, a.status, a.raw)
		}
	}
	for _, c := range []struct{ query, field string }{
		{"from=2026-13-01", "from"},
		{"to=yesterday", "to"},
		{"from=" + today + "&to=" + yday, "to"},
		{"from=2024-01-01&to=2025-06-01", "366 days"},
		{"group_by=day", "group_by"},
		{"group_by=date,date", "twice"},
		{"tenant=org%20acme", "tenant"},
		{"user=a%2Fb", "user"},
		{"key=k.1", "key"},
		{"since=" + today, "since"},
		{"tenant=org-acme&tenant=org-globex", "more than once"},
		{"tenant=", "tenant: empty"},
		{"user=", "user: empty"},
		{"key=", "key: empty"},
		{"from=", "from: empty"},
		{"to=", "to: empty"},
	} {
		if a := e.callMalformed("console", "GET", "/v1/usage?"+c.query, nil); a.status != 400 || !strings.Contains(a.str("error"), c.field) {
			t.Errorf("?%s: %d %s, want 400 naming %s", c.query, a.status, a.raw, c.field)
		}
	}
}

// TestSessionShowsWallets: the token page's session lists the wallets its
// user may read (their personal one, those of tenants they manage the
// keys of), and none other.
func TestSessionShowsWallets(t *testing.T) {
	e := newAPI(t, nil)
	for _, w := range []string{"org-acme", "org-globex", "u-alice", "u-bob"} {
		e.want(e.call("console", "PUT", "/v1/wallets/"+w, nil), 201, "")
	}
	e.want(e.call("console", "POST", "/v1/wallets/org-acme/grants", map[string]any{"units": 40, "idempotency_key": "g"}), 200, "")
	wallets := func(user string) string {
		cur := e.as(e.open(user, ""), "GET", "/v1/sessions/current", nil, nil)
		e.want(cur, 200, "")
		if cur.body["metered"] != true {
			t.Fatalf("metered: %s", cur.raw)
		}
		var out []string
		for _, w := range cur.body["wallets"].([]any) {
			m := w.(map[string]any)
			out = append(out, fmt.Sprintf("%s=%v", m["tenant"], m["balance"]))
		}
		return strings.Join(out, " ")
	}
	// carol manages org-acme's keys (her role), alice is its member only.
	for user, want := range map[string]string{"u-alice": "u-alice=0", "u-carol": "org-acme=40", "u-bob": "u-bob=0"} {
		if got := wallets(user); got != want {
			t.Errorf("%s's session lists %q, want %q", user, got, want)
		}
	}
}

// TestKeysAreNeverIDs: a minted key sent where a tenant, user or wallet id
// belongs is refused 400 without being stored, logged or echoed (a
// platform bug passing a key as an id must not spread it further).
func TestKeysAreNeverIDs(t *testing.T) {
	e := newAPI(t, nil)
	key, err := keys.New(keys.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	e.want(e.call("console", "PUT", "/v1/tenants/org-store", map[string]any{}), 201, "")
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/wallets/" + key, ""},
		{"POST", "/v1/wallets/" + key + "/grants", `{"units":1,"idempotency_key":"k"}`},
		{"GET", "/v1/wallets/" + key, ""},
		{"PUT", "/v1/tenants/" + key, "{}"},
		{"PUT", "/v1/tenants/org-new", `{"aliases":["` + key + `"]}`},
		{"PUT", "/v1/tenants/org-store/members/" + key, ""},
		{"PUT", "/v1/tenants/org-store/members", `{"members":[{"user":"` + key + `"}]}`},
		{"PUT", "/v1/users/" + key, `{"disabled":true}`},
		{"GET", "/v1/usage?tenant=" + key, ""},
		{"GET", "/v1/usage?user=" + key, ""},
		{"POST", "/v1/keys", `{"label":"x","tier":"service","user":"` + key + `"}`},
		{"GET", "/v1/keys?user=" + key, ""},
		{"GET", "/v1/keys?tenant=" + key, ""},
		{"POST", "/v1/keys/revoke", `{"user":"` + key + `"}`},
		{"POST", "/v1/keys/revoke", `{"tenant":"` + key + `"}`},
	} {
		a := e.callMalformed("console", c.method, c.path, c.body)
		if a.status != 400 || strings.Contains(a.raw, key) || strings.Contains(e.log.String(), key) {
			t.Errorf("%s %s: %d %s (or the key is in the log)", c.method, c.path, a.status, a.raw)
		}
	}
}
