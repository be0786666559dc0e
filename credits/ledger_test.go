package credits_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgreSQL()
	os.Exit(code)
}

// bank is the store on a fresh database of pg: the real Bank.
func bank(t testing.TB, pg *testkit.PostgreSQL) *store.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return store.New(pool)
}

// wallet makes tenant's wallet with units and returns it as the feed
// would give it.
func wallet(t testing.TB, s *store.Store, tenant string, units int64) credits.Wallet {
	t.Helper()
	ctx := context.Background()
	w, _, err := s.PutWallet(ctx, tenant, nil, false, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if units == 0 {
		return credits.Wallet{Version: w.Version, Since: w.Since}
	}
	_, v, _, err := s.Grant(ctx, tenant, units, "initial-"+tenant, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	return credits.Wallet{Version: v, Since: w.Since}
}

// TestNeverOverspent: three replicas' ledgers, fifty callers each, spend
// one wallet of 1,000 units at costs 1 and 7 until it is exhausted. The
// units admitted never exceed the units granted, exactly; once every
// ledger settled, the units admitted plus the balance are the units
// granted (none lost), and nothing is held.
func TestNeverOverspent(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	for _, cost := range []int64{1, 7} {
		tenant := fmt.Sprintf("org-%d", cost)
		v := wallet(t, s, tenant, 1000)
		var admitted atomic.Int64
		var ledgers []*credits.Ledger
		var wg sync.WaitGroup
		for r := range 3 {
			// 150 callers queue on the wallet's row: under the race
			// detector on a busy machine a take can outlast the 150 ms a
			// check waits in production, which this test does not time.
			l := credits.NewLedger(s, fmt.Sprintf("replica-%d-%d", cost, r), credits.Options{TakeTimeout: time.Minute})
			ledgers = append(ledgers, l)
			for range 50 {
				wg.Go(func() {
					for misses := 0; misses < 3; {
						switch o, _ := l.Admit(ctx, tenant, cost, v); o {
						case credits.Admitted:
							admitted.Add(cost)
						case credits.Exhausted:
							misses++
							// Another replica may hold what is left: settling
							// this one's idle holds returns them.
							_ = l.Settle(ctx, true)
						default:
							t.Errorf("outcome %v", o)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		for _, l := range ledgers {
			if err := l.Settle(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
		w, err := s.GetWallet(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if admitted.Load() > 1000 || admitted.Load()+w.Balance != 1000 || w.Held != 0 || w.SpentToday != admitted.Load() {
			t.Fatalf("cost %d: admitted %d, balance %d, held %d, spent today %d: want admitted ≤ 1000 = admitted + balance, nothing held",
				cost, admitted.Load(), w.Balance, w.Held, w.SpentToday)
		}
		if w.Balance >= cost*3 {
			t.Errorf("cost %d: %d units left unadmitted", cost, w.Balance)
		}
	}
}

// TestHeldUnitsOutliveTheStore: with units in hand a replica admits with
// the database stopped; without, it is Unavailable (the policy decides);
// an admission owed while it was down is charged once it is back, and
// may take the balance below zero.
func TestHeldUnitsOutliveTheStore(t *testing.T) {
	ctx := context.Background()
	pg := testkit.NewPostgreSQL(t)
	s := bank(t, pg)
	v := wallet(t, s, "org-a", 1000)
	bw := wallet(t, s, "org-b", 100)
	l := credits.NewLedger(s, "replica-1", credits.Options{Block: 50})
	if o, _ := l.Admit(ctx, "org-a", 1, v); o != credits.Admitted {
		t.Fatalf("first admission: %v", o)
	}
	if l.Held("org-a") != 49 {
		t.Fatalf("held %d after a block of 50, want 49", l.Held("org-a"))
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 49 {
		if o, _ := l.Admit(ctx, "org-a", 1, v); o != credits.Admitted {
			t.Fatalf("admission %d with units in hand and the store down: %v", i, o)
		}
	}
	if o, _ := l.Admit(ctx, "org-a", 1, v); o != credits.Unavailable {
		t.Fatalf("no units in hand, the store down: %v", o)
	}
	l.Owe("org-b", 150, bw)
	if err := l.Settle(ctx, true); err == nil {
		t.Fatal("a settlement with the store down succeeded")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := l.Settle(ctx, true); err != nil {
		t.Fatal(err)
	}
	a, _ := s.GetWallet(ctx, "org-a")
	b, _ := s.GetWallet(ctx, "org-b")
	if a.Balance != 950 || a.SpentToday != 50 || b.Balance != -50 || b.SpentToday != 150 {
		t.Fatalf("org-a %d spent %d (want 950, 50); org-b %d spent %d (want -50, 150)", a.Balance, a.SpentToday, b.Balance, b.SpentToday)
	}
}

// TestAStoppedReplicasHoldIsCharged: a replica that stops without
// settling (a crash) leaves its hold; after the lease it is dropped and
// counted forfeited, since the replica may have admitted all of it: the
// balance never grows back by what it might have spent. A replica that
// was only cut off settles later: what it returns goes back to the
// balance, once.
func TestAStoppedReplicasHoldIsCharged(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	v := wallet(t, s, "org-c", 400)
	crashed := credits.NewLedger(s, "replica-crashed", credits.Options{Block: 40})
	for range 5 {
		if o, _ := crashed.Admit(ctx, "org-c", 1, v); o != credits.Admitted {
			t.Fatalf("admission: %v", o)
		}
	}
	if w, _ := s.GetWallet(ctx, "org-c"); w.Held != 40 || w.Balance != 360 {
		t.Fatalf("held %d balance %d, want 40 and 360", w.Held, w.Balance)
	}
	if n, err := s.ChargeStale(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("a fresh hold charged: %d %v", n, err)
	}
	if n, err := s.ChargeStale(ctx, -time.Second); err != nil || n != 40 {
		t.Fatalf("charged %d %v, want the 40 held", n, err)
	}
	if w, _ := s.GetWallet(ctx, "org-c"); w.Held != 0 || w.Balance != 360 || w.Forfeited != 40 {
		t.Fatalf("after the lease: held %d balance %d forfeited %d", w.Held, w.Balance, w.Forfeited)
	}
	if err := crashed.Settle(ctx, true); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.GetWallet(ctx, "org-c"); w.Held != 0 || w.Balance != 395 || w.SpentToday != 5 {
		t.Fatalf("the cut-off replica settled: held %d balance %d spent %d, want 0, 395, 5", w.Held, w.Balance, w.SpentToday)
	}
	if err := crashed.Settle(ctx, true); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.GetWallet(ctx, "org-c"); w.Balance != 395 {
		t.Fatalf("settled twice: balance %d", w.Balance)
	}
}

// TestExhaustedThenGranted: an exhausted wallet is not asked again for
// every check (Recheck), but at once when its version changes: a grant
// is admitted at the next check.
func TestExhaustedThenGranted(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	v := wallet(t, s, "org-d", 3)
	l := credits.NewLedger(s, "replica-d", credits.Options{Recheck: time.Hour})
	for range 3 {
		if o, _ := l.Admit(ctx, "org-d", 1, v); o != credits.Admitted {
			t.Fatalf("admission: %v", o)
		}
	}
	if o, _ := l.Admit(ctx, "org-d", 1, v); o != credits.Exhausted {
		t.Fatalf("past the balance: %v", o)
	}
	if _, v2, _, err := s.Grant(ctx, "org-d", 10, "top-up-1", "", "test"); err != nil {
		t.Fatal(err)
	} else if o, _ := l.Admit(ctx, "org-d", 1, v); o != credits.Exhausted {
		t.Fatalf("the same version before Recheck: %v", o)
	} else if o, _ := l.Admit(ctx, "org-d", 1, credits.Wallet{Version: v2, Since: v.Since}); o != credits.Admitted {
		t.Fatalf("after the grant's version: %v", o)
	}
	if o, _ := l.Admit(ctx, "org-x", 1, credits.Wallet{Version: 1, Since: 1}); o != credits.NoWallet {
		t.Fatalf("no wallet: %v", o)
	}
}

// TestGrantsAreIdempotent: a grant retried with its key changes nothing
// and answers as the first; the key with another body is a conflict; 20
// concurrent retries add the units once.
func TestGrantsAreIdempotent(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	wallet(t, s, "org-e", 0)
	b1, v1, replay, err := s.Grant(ctx, "org-e", 25, "k-1", "top up", "test")
	if err != nil || replay || b1 != 25 {
		t.Fatalf("grant: %d %v %v", b1, replay, err)
	}
	b2, v2, replay, err := s.Grant(ctx, "org-e", 25, "k-1", "top up", "test")
	if err != nil || !replay || b2 != b1 || v2 != v1 {
		t.Fatalf("retry: %d %d %v %v, want %d %d replayed", b2, v2, replay, err, b1, v1)
	}
	for _, body := range []struct {
		units int64
		note  string
	}{{26, "top up"}, {25, "other"}} {
		if _, _, _, err := s.Grant(ctx, "org-e", body.units, "k-1", body.note, "test"); !errors.Is(err, store.ErrIdemClash) {
			t.Errorf("the key with %+v: %v", body, err)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for {
				_, _, _, err := s.Grant(ctx, "org-e", 5, "k-2", "", "test")
				if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrIdemClash) {
					if err != nil {
						t.Error(err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if w, _ := s.GetWallet(ctx, "org-e"); w.Balance != 30 {
		t.Fatalf("balance %d after concurrent retries, want 30", w.Balance)
	}
}

// TestRefills: a refill tops the balance up to its amount (never down) at
// its time, once, and moves on; setting one grants nothing at once.
func TestRefills(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	w, _, err := s.PutWallet(ctx, "org-f", &store.Refill{Amount: 100, Every: "day"}, true, "test", now)
	if err != nil || w.Balance != 0 || !w.NextRefill.Equal(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("daily: %+v %v", w, err)
	}
	m, _, err := s.PutWallet(ctx, "org-g", &store.Refill{Amount: 500, Every: "month", Day: 5}, true, "test", now)
	if err != nil || !m.NextRefill.Equal(time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("monthly: %+v %v", m, err)
	}
	if _, _, _, err := s.Grant(ctx, "org-g", 800, "big", "", "test"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RefillDue(ctx, now.Add(8*time.Hour)); err != nil || n != 0 {
		t.Fatalf("before midnight: %d %v", n, err)
	}
	midnight := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	if n, err := s.RefillDue(ctx, midnight); err != nil || n != 1 {
		t.Fatalf("at midnight: %d %v", n, err)
	}
	if n, _ := s.RefillDue(ctx, midnight.Add(time.Second)); n != 0 {
		t.Fatal("refilled twice")
	}
	if w, _ := s.GetWallet(ctx, "org-f"); w.Balance != 100 || !w.NextRefill.Equal(midnight.AddDate(0, 0, 1)) {
		t.Fatalf("after the refill: %+v", w)
	}
	if n, _ := s.RefillDue(ctx, time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC)); n != 2 {
		t.Fatalf("on the 5th: %d refills, want 2", n)
	}
	if g, _ := s.GetWallet(ctx, "org-g"); g.Balance != 800 || !g.NextRefill.Equal(time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("a refill took the balance down, or did not move on: %+v", g)
	}
}

// TestAWalletMadeAgainIsAnother: units a replica holds of a wallet that is
// deleted and made again are never spent on the new one, nor returned to
// it: the new wallet admits exactly what it was granted.
func TestAWalletMadeAgainIsAnother(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	old := wallet(t, s, "org-h", 400)
	l := credits.NewLedger(s, "replica-h", credits.Options{Block: 40})
	if o, _ := l.Admit(ctx, "org-h", 1, old); o != credits.Admitted || l.Held("org-h") != 39 {
		t.Fatalf("first admission: %v, held %d", o, l.Held("org-h"))
	}
	if _, err := s.DeleteWallet(ctx, "org-h", "test"); err != nil {
		t.Fatal(err)
	}
	again := wallet(t, s, "org-h", 3)
	if again.Since == old.Since {
		t.Fatal("the wallet made again has the old one's Since")
	}
	admitted := 0
	for range 10 {
		if o, _ := l.Admit(ctx, "org-h", 1, again); o == credits.Admitted {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("the new wallet of 3 units admitted %d checks", admitted)
	}
	// A replica that saw the new wallet only through a take (its feed
	// behind) drops the old units too.
	stale := credits.NewLedger(s, "replica-h2", credits.Options{Block: 40})
	third := wallet(t, s, "org-i", 400)
	if o, _ := stale.Admit(ctx, "org-i", 1, third); o != credits.Admitted {
		t.Fatal(o)
	}
	if _, err := s.DeleteWallet(ctx, "org-i", "test"); err != nil {
		t.Fatal(err)
	}
	if err := stale.Settle(ctx, true); err != nil {
		t.Fatal(err)
	}
	if w := wallet(t, s, "org-i", 2); w.Since == third.Since {
		t.Fatal("same Since")
	}
	if g, _ := s.GetWallet(ctx, "org-i"); g.Balance != 2 {
		t.Fatalf("units returned from a deleted wallet reached the new one: balance %d, want 2", g.Balance)
	}
}

// TestASettlementAppliesOnce: a settlement sent again under its number
// (its first answer lost, though it committed) changes nothing: returned
// units are not counted back twice.
func TestASettlementAppliesOnce(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	w := wallet(t, s, "org-j", 1000)
	took, _, since, err := s.Take(ctx, "replica-j", "org-j", 1, 100)
	if err != nil || took != 100 || since != w.Since {
		t.Fatalf("take: %d %d %v", took, since, err)
	}
	list := []credits.Settlement{{Tenant: "org-j", Since: since, Spent: 10, Returned: 90}}
	for range 3 {
		if err := s.Settle(ctx, "replica-j", 1, list); err != nil {
			t.Fatal(err)
		}
	}
	if g, _ := s.GetWallet(ctx, "org-j"); g.Balance != 990 || g.SpentToday != 10 || g.Held != 0 {
		t.Fatalf("after one settlement sent three times: balance %d spent %d held %d, want 990, 10, 0", g.Balance, g.SpentToday, g.Held)
	}
	// The next number applies.
	if _, _, _, err := s.Take(ctx, "replica-j", "org-j", 1, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, "replica-j", 2, []credits.Settlement{{Tenant: "org-j", Since: since, Returned: 100}}); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetWallet(ctx, "org-j"); g.Balance != 990 || g.Held != 0 {
		t.Fatalf("after the second: balance %d held %d", g.Balance, g.Held)
	}
}

// TestUnusedHoldsAreForgotten: a replica forgets the holds of wallets it
// has not charged for a while (its memory follows the wallets in use),
// and a check after that starts a new hold as if nothing happened.
func TestUnusedHoldsAreForgotten(t *testing.T) {
	ctx := context.Background()
	s := bank(t, testkit.SharedPostgreSQL(t))
	w := wallet(t, s, "org-k", 100)
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	l := credits.NewLedger(s, "replica-k", credits.Options{Now: clock})
	if o, _ := l.Admit(ctx, "org-k", 1, w); o != credits.Admitted {
		t.Fatal(o)
	}
	for range 4 { // used, then idle: its units go back, then it is forgotten
		if err := l.Settle(ctx, false); err != nil {
			t.Fatal(err)
		}
		now.Add(int64(4 * time.Minute))
	}
	if st := l.Stats(); st.Wallets != 0 || st.Held != 0 {
		t.Fatalf("after 12 idle minutes: %+v", st)
	}
	if o, _ := l.Admit(ctx, "org-k", 1, w); o != credits.Admitted {
		t.Fatal(o)
	}
	if err := l.Settle(ctx, true); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetWallet(ctx, "org-k"); g.Balance != 98 || g.Held != 0 {
		t.Fatalf("balance %d held %d, want 98 and 0", g.Balance, g.Held)
	}
}
