package credits

// This file holds the Ledger: one replica's holds, and the admission a
// check asks of it.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Bank is the store's side of the ledger. Implementations are safe for
// concurrent use.
type Bank interface {
	// Take moves units from tenant's wallet into this replica's hold, in
	// one transaction: want of them, but fewer near exhaustion (so one
	// replica does not hold what others need), at least min while the
	// balance covers it, none when it does not. It returns how many it
	// took and the wallet's balance after; ErrNoWallet when tenant has
	// none. Taken units leave the balance: spending them can never
	// overspend the wallet. since is the version that created the wallet
	// (Wallet.Since).
	Take(ctx context.Context, replica, tenant string, min, want int64) (took, balance, since int64, err error)
	// Settle reports, for this replica, the units each hold spent, the
	// units it returns, and the units admitted without a hold while the
	// store was unreachable (debt), in one transaction; it also renews
	// the replica's holds (a hold not renewed for the store's lease is
	// dropped and counted forfeited: its replica may have spent it). A
	// settlement whose Since is not the wallet's changes nothing. Each
	// replica numbers its settlements upwards from 1; one whose number was
	// applied already changes nothing (a retry of one that committed).
	Settle(ctx context.Context, replica string, seq int64, s []Settlement) error
}

// Settlement is what one hold reports.
type Settlement struct {
	Tenant                string
	Since                 int64 // the wallet it was taken from (Wallet.Since)
	Spent, Returned, Debt int64
}

// ErrNoWallet is Bank.Take's answer for a tenant without a wallet.
var ErrNoWallet = errors.New("no wallet")

// Outcome is what an admission decided.
type Outcome int

const (
	// Admitted: the cost was charged to units this replica holds.
	Admitted Outcome = iota
	// Exhausted: the wallet cannot cover the cost.
	Exhausted
	// Unavailable: no units in hand, and the store did not answer in time.
	Unavailable
	// NoWallet: the tenant has no wallet (it is unmetered).
	NoWallet
)

// Options tune a Ledger. Zero values take the defaults noted.
type Options struct {
	Block           int64         // least units taken at once while a wallet holds plenty; default 20
	MaxBlock        int64         // most units taken at once; default 10,000
	TakeTimeout     time.Duration // how long a check waits for a take; default 150ms
	PrefetchTimeout time.Duration // how long a take ahead of the checks may last; default 2s
	Every           time.Duration // how often holds are settled and renewed; default 250ms
	Idle            time.Duration // a hold unused this long is returned; default 1s
	Recheck         time.Duration // an exhausted wallet is asked again after this, or at its next change; default 1s
	Now             func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Block <= 0 {
		o.Block = 20
	}
	if o.MaxBlock <= 0 {
		o.MaxBlock = 10_000
	}
	if o.TakeTimeout <= 0 {
		o.TakeTimeout = 150 * time.Millisecond
	}
	if o.PrefetchTimeout <= 0 {
		o.PrefetchTimeout = 2 * time.Second
	}
	if o.Every <= 0 {
		o.Every = 250 * time.Millisecond
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	if o.Recheck <= 0 {
		o.Recheck = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// hold is what this replica holds of one wallet. Checks touch only its
// atomics; the mutex orders takes (the slow path) and settlements.
type hold struct {
	avail atomic.Int64 // units in hand
	debt  atomic.Int64 // admitted without units (store unreachable, on_outage: allow)
	used  atomic.Bool  // an admission since the last settlement
	low   atomic.Int64 // below this many units in hand, the next block is taken ahead (half the last block)

	prefetching atomic.Bool  // a prefetch is under way
	gone        atomic.Bool  // forgotten by the ledger: touch the tenant's new hold instead
	balance     atomic.Int64 // the wallet's balance after this replica's last take
	since       atomic.Int64 // the wallet the units are of (Wallet.Since); 0: none yet

	exhaustedAt      atomic.Int64 // Unix nanoseconds the store last said exhausted; 0: not
	exhaustedVersion atomic.Int64 // the wallet's version then

	mu        sync.Mutex
	rate      int64     // units spent per period, smoothed (under mu)
	base      int64     // avail as the last settlement left it, plus what was taken since (under mu): base − avail is spent
	idleSince time.Time // the first settlement that found it unused (under mu)
}

// Ledger is one replica's holds of every wallet it admits against. It is
// safe for concurrent use: an admission with units in hand takes no lock
// and makes no call.
type Ledger struct {
	bank    Bank
	replica string
	opts    Options
	holds   *holdSet

	takes  atomic.Int64 // calls to Bank.Take
	owed   atomic.Int64 // units admitted without a hold, ever
	closed atomic.Bool  // no more prefetches

	settling sync.Mutex  // one settlement at a time; guards what follows
	seq      int64       // the last settlement's number
	pending  *settlement // one that failed, to send again first
}

// Stats is what a Ledger did, for metrics.
type Stats struct {
	Wallets int   // wallets this replica keeps a hold of (empty ones are forgotten after a while)
	Held    int64 // units this replica holds now, over every wallet
	Takes   int64 // blocks asked of the store, ever
	Owed    int64 // units admitted without a hold (the store unreachable, on_outage: allow), ever
}

// Stats returns what l holds now and did so far.
func (l *Ledger) Stats() Stats {
	st := Stats{Takes: l.takes.Load(), Owed: l.owed.Load()}
	l.holds.each(func(_ string, h *hold) {
		st.Wallets++
		st.Held += h.avail.Load()
	})
	return st
}

// NewLedger returns the Ledger of replica (a name unique among the
// replicas now running) over bank.
func NewLedger(bank Bank, replica string, opts Options) *Ledger {
	return &Ledger{bank: bank, replica: replica, opts: opts.withDefaults(), holds: newHoldSet()}
}

// Replica returns the ledger's replica name.
func (l *Ledger) Replica() string { return l.replica }

func (l *Ledger) hold(tenant string) *hold { return l.holds.get(tenant) }

// spend takes cost from the units in hand, without a lock.
func (h *hold) spend(cost int64) bool {
	for {
		a := h.avail.Load()
		if a < cost {
			return false
		}
		if h.avail.CompareAndSwap(a, a-cost) { // the one write a check makes
			return true
		}
	}
}

// Admit charges cost units to tenant's wallet w (as the feed gave it),
// and returns the outcome and the units the answering replica sees left
// (its units in hand and the wallet's balance after its last take). With
// units in hand it takes no lock and makes no call; else it takes a block
// from the store, waiting at most TakeTimeout. A wallet found exhausted is
// asked again for a check costing more than the balance it had only after
// Recheck or once its version changed (a grant or a refill). Units held of
// a wallet since deleted and made again are dropped, never spent on the
// new one.
func (l *Ledger) Admit(ctx context.Context, tenant string, cost int64, w Wallet) (Outcome, int64) {
	h := l.hold(tenant)
	if s := h.since.Load(); s != w.Since && s != 0 {
		h.renew(w.Since)
	}
	if !h.used.Load() { // written once per settlement, not per check: the line stays shared
		h.used.Store(true)
	}
	if h.spend(cost) {
		left := h.avail.Load()
		if left < h.low.Load() && h.prefetching.CompareAndSwap(false, true) {
			go l.prefetch(tenant, h)
		}
		return Admitted, left + h.balance.Load()
	}
	return l.admitSlow(ctx, tenant, h, cost, w)
}

// admitSlow is Admit without units in hand: a function of its own, so the
// frame of every check's Admit stays small (a check's goroutine grows its
// stack, at a cost, when a call goes deeper than it has).
func (l *Ledger) admitSlow(ctx context.Context, tenant string, h *hold, cost int64, w Wallet) (Outcome, int64) {
	now := l.opts.Now()
	// The store said this wallet could not cover a check: until Recheck,
	// or a change of the wallet, a check costing more than the balance it
	// saw is refused without asking again.
	if at := h.exhaustedAt.Load(); at != 0 && h.exhaustedVersion.Load() == w.Version && now.Sub(time.Unix(0, at)) < l.opts.Recheck &&
		cost > h.balance.Load() {
		return Exhausted, h.avail.Load() + h.balance.Load()
	}
	h.mu.Lock()
	if h.gone.Load() { // forgotten meanwhile: the tenant's new hold
		h.mu.Unlock()
		return l.Admit(ctx, tenant, cost, w)
	}
	defer h.mu.Unlock()
	if h.spend(cost) { // another check, or a prefetch, took a block meanwhile
		return Admitted, h.avail.Load() + h.balance.Load()
	}
	tctx, cancel := context.WithTimeout(ctx, l.opts.TakeTimeout)
	defer cancel()
	// Checks on the fast path may spend what a take brought in before this
	// one does: take again (a few times) rather than call a wallet that
	// still has units exhausted.
	for range 4 {
		took, err := l.take(tctx, tenant, h, cost)
		switch {
		case errors.Is(err, ErrNoWallet):
			return NoWallet, 0
		case err != nil:
			return Unavailable, 0
		case took == 0:
			h.exhaustedVersion.Store(w.Version)
			h.exhaustedAt.Store(now.UnixNano())
			return Exhausted, h.avail.Load() + h.balance.Load()
		}
		if h.spend(cost) {
			h.exhaustedAt.Store(0)
			return Admitted, h.avail.Load() + h.balance.Load()
		}
	}
	return Exhausted, h.avail.Load() + h.balance.Load()
}

// take asks the store for a block of tenant's wallet into h (under h.mu):
// at least least units, as many as twice what a period spends here. Units
// of a wallet the store says is another (deleted and made again) are
// dropped first.
func (l *Ledger) take(ctx context.Context, tenant string, h *hold, least int64) (int64, error) {
	want := min(max(l.opts.Block, 2*h.rate, least), max(l.opts.MaxBlock, least))
	l.takes.Add(1)
	took, balance, since, err := l.bank.Take(ctx, l.replica, tenant, least, want)
	if err != nil {
		return 0, err
	}
	if s := h.since.Load(); s != since {
		if s != 0 { // the store's wallet is newer than what this replica held
			h.drop()
		}
		h.since.Store(since)
	}
	h.balance.Store(balance)
	if took > 0 {
		h.base += took
		h.avail.Add(took)
		h.low.Store(took / 2)
	}
	return took, nil
}

// prefetch takes the next block of tenant's wallet before the units in
// hand run out, off every check's path, so a check at a block's end does
// not wait on the database either.
func (l *Ledger) prefetch(tenant string, h *hold) {
	defer h.prefetching.Store(false)
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.closed.Load() || h.gone.Load() || h.avail.Load() >= h.low.Load() { // stopping, forgotten, or another took meanwhile
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.PrefetchTimeout)
	defer cancel()
	_, _ = l.take(ctx, tenant, h, 1) // a failure leaves it to the next check
}

// Close stops l taking units ahead of checks; call it once checks have
// stopped, before the last Settle(ctx, true).
func (l *Ledger) Close() { l.closed.Store(true) }

// renew makes h a hold of the wallet since (a wallet deleted and made
// again), dropping what it held of the old one.
func (h *hold) renew(since int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.Load() != since {
		h.drop()
		h.since.Store(since)
	}
}

// drop forgets what h holds, spent and owes of a wallet that is gone: the
// store would refuse to settle it with the new one.
func (h *hold) drop() {
	h.avail.Store(0)
	h.base = 0
	h.debt.Store(0)
	h.balance.Store(0)
	h.exhaustedAt.Store(0)
}

// Owe records cost admitted without units of tenant's wallet w (the store
// unreachable and the policy's on_outage: allow): it is charged at the
// next settlement, and may take the wallet's balance below zero.
func (l *Ledger) Owe(tenant string, cost int64, w Wallet) {
	h := l.hold(tenant)
	if s := h.since.Load(); s != w.Since {
		if s != 0 {
			h.renew(w.Since)
		} else {
			h.since.CompareAndSwap(0, w.Since)
		}
	}
	h.debt.Add(cost)
	if h.gone.Load() { // forgotten meanwhile: owe it on the tenant's new hold
		h.debt.Add(-cost)
		l.Owe(tenant, cost, w)
		return
	}
	l.owed.Add(cost)
	h.used.Store(true)
}

// Held returns the units this replica holds of tenant's wallet now.
func (l *Ledger) Held(tenant string) int64 {
	if h, ok := l.holds.lookup(tenant); ok {
		return h.avail.Load()
	}
	return 0
}

// Run settles and renews every Every until ctx ends, telling failed of
// each settlement that failed (nil: none). At shutdown, once checks have
// stopped, call Settle(ctx, true) to return every unit held.
func (l *Ledger) Run(ctx context.Context, failed func(error)) {
	t := time.NewTicker(l.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Settle(ctx, false); err != nil && failed != nil && ctx.Err() == nil {
				failed(err)
			}
		}
	}
}

// DryRun returns an admitter that decides as l would with what l knows
// now (its units in hand and the balance its last take saw), charging and
// taking nothing: for a shadow policy.
func (l *Ledger) DryRun() DryRun { return DryRun{l} }

// DryRun is Ledger.DryRun's admitter.
type DryRun struct{ l *Ledger }

// Admit answers Admitted when l holds cost units of tenant's wallet or
// saw a balance covering it, else Exhausted; NoWallet it cannot tell.
func (d DryRun) Admit(_ context.Context, tenant string, cost int64, _ Wallet) (Outcome, int64) {
	x, ok := d.l.holds.lookup(tenant)
	if !ok {
		return Admitted, 0
	}
	left := x.avail.Load() + x.balance.Load()
	if left < cost {
		return Exhausted, left
	}
	return Admitted, left - cost
}

// Owe does nothing: a dry run charges nothing.
func (DryRun) Owe(string, int64, Wallet) {}

// Settle reports every hold's spending, returns holds idle for Idle (all
// of them when all is set), and renews the rest. A settlement that failed
// is sent again, unchanged and under the same number, before any other:
// the store applies each number once, so one that did commit though its
// answer was lost is not applied twice (returned units would be counted
// back twice). Its counts are out of the holds meanwhile; nothing is lost
// while the replica runs.
func (l *Ledger) Settle(ctx context.Context, all bool) error {
	l.settling.Lock()
	defer l.settling.Unlock()
	if l.pending != nil {
		if err := l.bank.Settle(ctx, l.replica, l.pending.seq, l.pending.list); err != nil {
			return err
		}
		l.pending = nil
	}
	now := l.opts.Now()
	var list []Settlement
	l.holds.each(func(tenant string, h *hold) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.gone.Load() {
			return
		}
		s := Settlement{Tenant: tenant, Since: h.since.Load(), Debt: h.debt.Swap(0)}
		switch {
		case h.used.Swap(false):
			h.idleSince = time.Time{}
		case h.idleSince.IsZero():
			h.idleSince = now
		}
		// What was spent since the last settlement is what left the hand:
		// checks only ever take from avail, so they need not count.
		var a int64
		if all || (!h.idleSince.IsZero() && now.Sub(h.idleSince) >= l.opts.Idle-l.opts.Every) {
			a = h.avail.Swap(0)
			s.Returned, s.Spent, h.base = a, h.base-a, 0
		} else {
			a = h.avail.Load()
			s.Spent, h.base = h.base-a, a
		}
		// The block size follows what the wallet spends: twice a period's
		// use, smoothed.
		h.rate = (h.rate + s.Spent + s.Debt) / 2
		if s.Spent != 0 || s.Returned != 0 || s.Debt != 0 {
			list = append(list, s)
		} else if !h.idleSince.IsZero() && now.Sub(h.idleSince) >= forgetAfter {
			l.forget(tenant, h)
		}
	})
	l.holds.merge(now)
	l.seq++
	if err := l.bank.Settle(ctx, l.replica, l.seq, list); err != nil {
		l.pending = &settlement{seq: l.seq, list: list}
		return err
	}
	return nil
}

// settlement is one sent to the bank and not known to have committed.
type settlement struct {
	seq  int64
	list []Settlement
}

// forgetAfter is how long a hold with nothing in it stays unused before
// the ledger forgets it (so a replica's memory follows the wallets in use,
// not every wallet it ever charged).
const forgetAfter = 5 * time.Minute

// forget removes h, empty and unused, from the ledger (under h.mu). A
// check or an Owe that found h before it went makes sure it is still
// there after touching it (hold.gone), and otherwise starts again.
func (l *Ledger) forget(tenant string, h *hold) {
	h.gone.Store(true)
	if h.avail.Load() != 0 || h.base != 0 || h.debt.Load() != 0 || h.prefetching.Load() {
		h.gone.Store(false) // touched meanwhile: keep it
		return
	}
	l.holds.forget(tenant, h)
}
