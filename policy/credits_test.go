package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
	pgstore "github.com/portcullis/portcullis/store"
)

const creditsPolicy = `version: 1
credentials:
  api_key: { bearer: true }
personal_tenants: true
keys_store:
  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }
tenants:
  org-a: { members: [u-alice] }
  org-b: { members: [u-alice] }
tiers:
  service: { requires_any: [ { key: any } ] }
  admin: { requires_any: [ { key: any } ] }
context:
  - { header: ib-context }
routes:
  - { prefix: /admin, tier: admin, tenant: optional }
  - { prefix: /, tier: service, tenant: optional }
upstream_headers:
  tenant: x-tenant-id
  credits_remaining: x-credits-remaining
credits:
  costs:
    - { prefix: /v1/predict, methods: [POST], cost: 10 }
    - { prefix: /v1, cost: 1 }
    - { prefix: /admin, cost: 1 }
`

// creditsEnv is a policy metering routes, its engine, and a real ledger
// over a real PostgreSQL.
type creditsEnv struct {
	t     testing.TB
	pg    *testkit.PostgreSQL
	bank  *pgstore.Store
	st    *store
	eng   *policy.Engine
	led   *credits.Ledger
	ctx   context.Context
	alice string // u-alice's key (service)
}

func newCreditsEnv(t testing.TB, pol string, pg *testkit.PostgreSQL) *creditsEnv {
	t.Helper()
	s, err := loadString(t, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	kb := keys.NewIndexBuilder(2)
	kb.AddValue(keys.DigestOf("alice-key"), keys.NewAPIKey("k-alice", "", "u-alice", "service", false, false, time.Time{}, keys.RateLimit{}))
	kb.AddValue(keys.DigestOf("admin-key"), keys.NewAPIKey("k-admin", "", "u-alice", "admin", false, false, time.Time{}, keys.RateLimit{}))
	e := &creditsEnv{t: t, pg: pg, bank: pgstore.New(pool), ctx: ctx, alice: "alice-key"}
	e.st = &store{keys: kb.Build(), dir: directory.NewView(directory.NewBuilder(0, 0, 0).Build(), directory.NewLayer()), wallets: credits.NewWallets(nil)}
	e.led = credits.NewLedger(e.bank, "replica-test", credits.Options{Block: 5})
	e.eng = policy.NewEngine(s, policy.EngineOptions{Store: e.st, Credits: e.led})
	return e
}

// wallet creates tenant's wallet with units and tells the engine's view,
// as the mirror would.
func (e *creditsEnv) wallet(tenant string, units int64, next time.Time) {
	e.t.Helper()
	w, _, err := e.bank.PutWallet(e.ctx, tenant, nil, false, "test", time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	v := w.Version
	if units != 0 {
		var err error
		if _, v, _, err = e.bank.Grant(e.ctx, tenant, units, "initial", "", "test"); err != nil {
			e.t.Fatal(err)
		}
	}
	e.st.wallets = e.st.wallets.With(map[string]*credits.Wallet{tenant: {Version: v, Since: w.Since, NextRefill: next}})
}

func (e *creditsEnv) decide(key, method, path, tenant string, extra ...string) policy.Decision {
	h := map[string]string{"authorization": "Bearer " + key}
	if tenant != "" {
		h["ib-context"] = tenant
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return e.eng.Decide(e.ctx, policy.Request{Method: method, Path: path, Headers: h})
}

func (e *creditsEnv) balance(tenant string) int64 {
	e.t.Helper()
	if err := e.led.Settle(e.ctx, true); err != nil {
		e.t.Fatal(err)
	}
	w, err := e.bank.GetWallet(e.ctx, tenant)
	if err != nil {
		e.t.Fatal(err)
	}
	return w.Balance
}

func header(d policy.Decision, name string) (string, bool) {
	for _, h := range d.SetHeaders {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// TestCreditsCharge: an allowed request on a metered route charges its
// cost, once, to the wallet of the tenant it acts for (the context
// header's organization, else the caller's personal context), never
// another; past the balance it is 429 credits_exhausted with Retry-After
// until the refill, and charges nothing; a denied or free request never
// consults a wallet; the balance after the charge goes upstream, and a
// client's own copy of that header never does.
func TestCreditsCharge(t *testing.T) {
	e := newCreditsEnv(t, creditsPolicy, testkit.SharedPostgreSQL(t))
	refill := time.Now().Add(90 * time.Minute)
	e.wallet("org-a", 25, refill)
	e.wallet("u-alice", 3, time.Time{})

	for i, want := range []bool{true, true, false} {
		d := e.decide(e.alice, "POST", "/v1/predict", "org-a")
		if d.Allow != want || d.Cost != 10 || d.Wallet != "org-a" {
			t.Fatalf("predict %d on org-a: allow=%v %s cost %d wallet %q", i, d.Allow, d.Reason, d.Cost, d.Wallet)
		}
		if !want {
			if d.Reason != reason.CreditsExhausted || d.Status() != 429 || d.RetryAfter < 89*60 || d.RetryAfter > 90*60 {
				t.Fatalf("exhausted: %s %d Retry-After %d", d.Reason, d.Status(), d.RetryAfter)
			}
			var meta []string
			d.EachMetadata(func(k, v string) {
				if k == "cost" || k == "wallet" {
					meta = append(meta, k+"="+v)
				}
			})
			if strings.Join(meta, " ") != "cost=10 wallet=org-a" {
				t.Fatalf("exhausted metadata: %v", meta)
			}
		} else if v, ok := header(d, "x-credits-remaining"); !ok || v == "" {
			t.Fatalf("no x-credits-remaining upstream: %v", d.SetHeaders)
		}
	}
	if d := e.decide(e.alice, "GET", "/v1/models", "org-a"); !d.Allow || d.Cost != 1 {
		t.Fatalf("a cheaper route with 5 left: %v %s", d.Allow, d.Reason)
	}
	if b := e.balance("org-a"); b != 4 {
		t.Fatalf("org-a balance %d, want 25 - 10 - 10 - 1 = 4", b)
	}
	// Personal context: alice's own wallet, not org-a's.
	if d := e.decide(e.alice, "POST", "/v1/predict", ""); d.Allow || d.Wallet != "u-alice" || d.Reason != reason.CreditsExhausted || d.RetryAfter != 0 {
		t.Fatalf("predict in alice's personal context (3 units, no refill): %v %s wallet %q Retry-After %d", d.Allow, d.Reason, d.Wallet, d.RetryAfter)
	}
	if d := e.decide(e.alice, "GET", "/v1/models", ""); !d.Allow || d.Wallet != "u-alice" {
		t.Fatalf("a read in alice's personal context: %v %s %q", d.Allow, d.Reason, d.Wallet)
	}
	if a, u := e.balance("org-a"), e.balance("u-alice"); a != 4 || u != 2 {
		t.Fatalf("balances org-a %d u-alice %d, want 4 and 2", a, u)
	}
	// Denied requests never charge, free ones never consult a wallet, an
	// unmetered tenant (no wallet) is free.
	for _, c := range []struct {
		key, method, path, tenant string
		allow                     bool
		cost                      int64
	}{
		{"no-such-key", "GET", "/v1/models", "org-a", false, 0},
		{e.alice, "GET", "/admin/x", "org-a", false, 0}, // tier_too_low
		{e.alice, "GET", "/v1/models", "org-zzz", false, 0},
		{e.alice, "GET", "/health", "org-a", true, 0},
		{e.alice, "GET", "/v1/models", "org-b", true, 1},
	} {
		d := e.decide(c.key, c.method, c.path, c.tenant)
		if d.Allow != c.allow || d.Wallet != "" || (d.Allow && d.Cost != c.cost) {
			t.Errorf("%s %s as %s: allow=%v %s cost %d wallet %q", c.method, c.path, c.tenant, d.Allow, d.Reason, d.Cost, d.Wallet)
		}
		if _, ok := header(d, "x-credits-remaining"); ok {
			t.Errorf("%s %s as %s: x-credits-remaining set without a charge", c.method, c.path, c.tenant)
		}
		if d.Allow && !contains(d.RemoveHeaders, "x-credits-remaining") {
			t.Errorf("%s %s as %s: a client's x-credits-remaining is not removed: %v", c.method, c.path, c.tenant, d.RemoveHeaders)
		}
	}
	if a := e.balance("org-a"); a != 4 {
		t.Fatalf("org-a balance %d after denied and free requests, want 4", a)
	}
	// A grant (a new version on the feed) is admitted at the next check.
	if _, v, _, err := e.bank.Grant(e.ctx, "org-a", 100, "more", "", "test"); err != nil {
		t.Fatal(err)
	} else {
		old, _ := e.st.wallets.Lookup("org-a")
		e.st.wallets = e.st.wallets.With(map[string]*credits.Wallet{"org-a": {Version: v, Since: old.Since}})
	}
	if d := e.decide(e.alice, "POST", "/v1/predict", "org-a"); !d.Allow {
		t.Fatalf("after a grant: %s", d.Reason)
	}
	// A deleted wallet (the mirror still lists it): unmetered from then on.
	if _, err := e.bank.DeleteWallet(e.ctx, "u-alice", "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.led.Settle(e.ctx, true); err != nil { // the replica's hold goes back
		t.Fatal(err)
	}
	if d := e.decide(e.alice, "POST", "/v1/predict", ""); !d.Allow || d.Wallet != "" {
		t.Fatalf("a deleted wallet: %v %s %q", d.Allow, d.Reason, d.Wallet)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCreditsUnmeteredDeny: with unmetered: deny a tenant without a
// wallet is 429 on metered routes, still free on the others.
func TestCreditsUnmeteredDeny(t *testing.T) {
	e := newCreditsEnv(t, strings.Replace(creditsPolicy, "credits:\n", "credits:\n  unmetered: deny\n", 1), testkit.SharedPostgreSQL(t))
	if d := e.decide(e.alice, "GET", "/v1/models", "org-b"); d.Allow || d.Reason != reason.CreditsExhausted {
		t.Fatalf("no wallet, unmetered: deny: %v %s", d.Allow, d.Reason)
	}
	if d := e.decide(e.alice, "GET", "/health", "org-b"); !d.Allow {
		t.Fatalf("a free route: %s", d.Reason)
	}
}

// TestCreditsOutage: with the database down, a replica admits what it
// holds units for; without any it refuses 503 (on_outage: deny), or
// admits and charges once the database is back (on_outage: allow), which
// may take the balance below zero.
func TestCreditsOutage(t *testing.T) {
	for _, mode := range []string{"deny", "allow"} {
		t.Run(mode, func(t *testing.T) {
			pg := testkit.NewPostgreSQL(t)
			e := newCreditsEnv(t, strings.Replace(creditsPolicy, "credits:\n", "credits:\n  on_outage: "+mode+"\n", 1), pg)
			e.wallet("org-a", 100, time.Time{})
			e.wallet("org-b", 100, time.Time{})
			if d := e.decide(e.alice, "GET", "/v1/models", "org-a"); !d.Allow {
				t.Fatalf("before the outage: %s", d.Reason)
			}
			held := e.led.Held("org-a")
			if held < 1 {
				t.Fatalf("held %d after an admission", held)
			}
			if err := pg.Stop(); err != nil {
				t.Fatal(err)
			}
			for range held {
				if d := e.decide(e.alice, "GET", "/v1/models", "org-a"); !d.Allow {
					t.Fatalf("units in hand, the database down: %s", d.Reason)
				}
			}
			d := e.decide(e.alice, "POST", "/v1/predict", "org-b")
			switch {
			case mode == "deny" && (d.Allow || d.Reason != reason.StoreUnavailable || d.Status() != 503):
				t.Fatalf("no units in hand, on_outage: deny: %v %s", d.Allow, d.Reason)
			case mode == "allow" && !d.Allow:
				t.Fatalf("no units in hand, on_outage: allow: %s", d.Reason)
			}
			if err := pg.Start(); err != nil {
				t.Fatal(err)
			}
			want := int64(100)
			if mode == "allow" {
				want = 90
			}
			if b := e.balance("org-b"); b != want {
				t.Fatalf("org-b balance %d once the database is back, want %d", b, want)
			}
			if b := e.balance("org-a"); b != 100-1-held {
				t.Fatalf("org-a balance %d, want %d", b, 100-1-held)
			}
		})
	}
}

// TestCreditsValidation: each mistake in a credits block is refused,
// named by field: a rule no request can reach (shadowed) among them.
func TestCreditsValidation(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"no key store", "keys_store:\n  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }\n", "", "credits: wallets live in the key store"},
		{"a bad unmetered", "credits:\n", "credits:\n  unmetered: free\n", "credits.unmetered: want allow or deny"},
		{"a bad on_outage", "credits:\n", "credits:\n  on_outage: maybe\n", "credits.on_outage: want deny or allow"},
		{"no rules", "  costs:\n    - { prefix: /v1/predict, methods: [POST], cost: 10 }\n    - { prefix: /v1, cost: 1 }\n    - { prefix: /admin, cost: 1 }\n", "  costs: []\n", "credits.costs: list at least one"},
		{"a zero cost", "{ prefix: /v1, cost: 1 }", "{ prefix: /v1, cost: 0 }", "credits.costs[1].cost: want a whole number"},
		{"a huge cost", "{ prefix: /v1, cost: 1 }", "{ prefix: /v1, cost: 1000000001 }", "credits.costs[1].cost"},
		{"both path and prefix", "{ prefix: /v1, cost: 1 }", "{ prefix: /v1, path: /v1/x, cost: 1 }", "credits.costs[1]: set exactly one of prefix and path"},
		{"a lower-case method", "methods: [POST]", "methods: [post]", "credits.costs[0].methods[0]"},
		{"shadowed by a prefix", "    - { prefix: /v1/predict, methods: [POST], cost: 10 }\n    - { prefix: /v1, cost: 1 }\n",
			"    - { prefix: /v1, cost: 1 }\n    - { prefix: /v1/predict, methods: [POST], cost: 10 }\n", "credits.costs[1]: no request can reach this rule: credits.costs[0]"},
		{"shadowed by methods", "    - { prefix: /v1, cost: 1 }\n", "    - { prefix: /v1, methods: [POST, GET], cost: 1 }\n    - { path: /v1/predict, methods: [POST], cost: 3 }\n", "credits.costs[2]: no request can reach this rule: credits.costs[0]"},
		{"a header without credits", "credits:\n  costs:\n    - { prefix: /v1/predict, methods: [POST], cost: 10 }\n    - { prefix: /v1, cost: 1 }\n    - { prefix: /admin, cost: 1 }\n", "", "upstream_headers.credits_remaining: the policy meters nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(creditsPolicy, tc.from) {
				t.Fatalf("the policy has no %q", tc.from)
			}
			_, err := loadString(t, strings.Replace(creditsPolicy, tc.from, tc.to, 1), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant %s", err, tc.want)
			}
		})
	}
	// Not shadowed: a narrower rule first, or another method or host.
	for _, costs := range []string{
		"    - { prefix: /v1, methods: [GET], cost: 1 }\n    - { prefix: /v1, cost: 2 }\n",
		"    - { prefix: /v1/a, cost: 1 }\n    - { prefix: /v1/ab, cost: 2 }\n",
		"    - { prefix: /v1, hosts: [a.example.com], cost: 1 }\n    - { prefix: /v1, cost: 2 }\n",
	} {
		p := strings.Replace(creditsPolicy, "    - { prefix: /v1/predict, methods: [POST], cost: 10 }\n    - { prefix: /v1, cost: 1 }\n", costs, 1)
		if _, err := loadString(t, p, nil); err != nil {
			t.Errorf("%s: %v", costs, err)
		}
	}
}

// BenchmarkDecideMetered: a key-only check on a metered route, the wallet
// charged through a real ledger on a real PostgreSQL, beside the same
// check on a route no cost rule matches.
//
//	go test -run '^$' -bench DecideMetered -cpu 1,2 ./policy
func BenchmarkDecideMetered(b *testing.B) {
	// The balance upstream is not asked for: what is measured is the charge.
	e := newCreditsEnv(b, strings.Replace(creditsPolicy, "  credits_remaining: x-credits-remaining\n", "", 1), testkit.SharedPostgreSQL(b))
	e.wallet("org-a", 1_000_000_000_000, time.Time{})
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go e.led.Run(rctx, nil)
	for _, c := range []struct{ name, path string }{{"metered", "/v1/models"}, {"free", "/health"}} {
		req := policy.Request{Method: "GET", Path: c.path, Headers: map[string]string{"authorization": "Bearer " + e.alice, "ib-context": "org-a"}}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if d := e.eng.Decide(e.ctx, req); !d.Allow {
						b.Errorf("%s: %s", c.path, d.Reason)
						return
					}
				}
			})
		})
	}
}
