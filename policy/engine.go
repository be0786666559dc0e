package policy

// This file holds the Engine and the decision pipeline: route, extract,
// verify, grant, tenant, headers, each step in a file named after it.

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// EngineOptions tune an Engine. Zero values take the defaults noted.
type EngineOptions struct {
	TokenCacheSize   int              // verified tokens kept; default 100,000
	FailureCacheSize int              // failed tokens kept; default 10,000
	FailureTTL       time.Duration    // how long a failure is remembered; default 10s
	Now              func() time.Time // clock; default time.Now
	// Store, when set, holds the keys of the policy's key store (a mirror of
	// the database): checks look keys up in the policy, then in it.
	Store Store
	// OnPanic, when set, is told of every panic Decide recovered from (the
	// check was denied 503), with the stack of the goroutine that panicked.
	// It must be safe for concurrent use.
	OnPanic func(value any, stack []byte)
	// Credits, when set, admits metered checks against wallets (the
	// replica's credits.Ledger); without it every route is free.
	Credits Admitter
}

// Store is where an Engine finds the key store's keys, its directory and
// its wallets. Implementations are safe for concurrent use and never
// block: a check never waits on a database.
type Store interface {
	// View returns the keys, the directory (tenants, members, user states)
	// and the wallets as held now, all of one moment of the store.
	View() (keys.Set, directory.Set, *credits.Wallets)
	// Loaded reports whether the store was loaded once.
	Loaded() bool
}

// storeView is the store as one check sees it, pinned at its start.
type storeView struct {
	keys    keys.Set      // nil: no store
	dir     directory.Set // nil: no directory in the store
	wallets *credits.Wallets
	admit   Admitter // nil: nothing admits credits
	loaded  bool
}

// Engine decides requests against the current Snapshot. It is safe for
// concurrent use: Decide pins one snapshot per call, and Swap publishes a new
// one atomically without disturbing checks in flight.
type Engine struct {
	snap    atomic.Pointer[Snapshot]
	store   Store
	credits Admitter
	tokens  *authn.Tokens
	now     func() time.Time
	onPanic func(value any, stack []byte)
}

// NewEngine returns an Engine serving s.
func NewEngine(s *Snapshot, opts EngineOptions) *Engine {
	if opts.TokenCacheSize <= 0 {
		opts.TokenCacheSize = 100_000
	}
	if opts.FailureCacheSize <= 0 {
		opts.FailureCacheSize = 10_000
	}
	if opts.FailureTTL <= 0 {
		opts.FailureTTL = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{tokens: authn.NewTokens(opts.TokenCacheSize, opts.FailureCacheSize, opts.FailureTTL),
		now: opts.Now, onPanic: opts.OnPanic, store: opts.Store, credits: opts.Credits}
	e.snap.Store(s)
	return e
}

// Snapshot returns the snapshot new requests are decided against.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Swap publishes s for new requests and returns the previous snapshot.
func (e *Engine) Swap(s *Snapshot) *Snapshot { return e.snap.Swap(s) }

// CachedTokens returns the number of verified tokens in the cache.
func (e *Engine) CachedTokens() int { return e.tokens.Len() }

// TokenCacheStats returns the verified-token cache's hits and misses so far.
func (e *Engine) TokenCacheStats() (hits, misses uint64) { return e.tokens.Stats() }

// Decide answers req. It never fails: a broken dependency or a panic is a
// deny (503), never an allow.
func (e *Engine) Decide(ctx context.Context, req Request) (d Decision) {
	id := req.ID
	if id == "" {
		id = DecisionID(req.Headers["x-request-id"])
	}
	defer func() {
		if p := recover(); p != nil {
			d = Deny(reason.Internal)
			if e.onPanic != nil {
				e.onPanic(p, debug.Stack())
			}
		}
		d.ID = id
	}()
	s := e.snap.Load()
	if s == nil {
		return Deny(reason.Internal)
	}
	var st storeView
	if e.store != nil {
		k, dir, wallets := e.store.View()
		st = storeView{keys: k, loaded: e.store.Loaded(), wallets: wallets, admit: e.credits}
		if s.dir.store {
			st.dir = dir
		}
	}
	d = s.decide(ctx, e.tokens, req, &st, e.now())
	d.PolicyVersion = s.meta.version
	if d.Allow {
		d.IDHeader = s.upstream.decisionID
	}
	return d
}

// decide runs the pipeline on one pinned snapshot.
func (s *Snapshot) decide(ctx context.Context, tc *authn.Tokens, req Request, st *storeView, now time.Time) Decision {
	rt, r := s.route(req.Method, req.Path, req.Host)
	if r != "" {
		return Deny(r)
	}
	if rt.public {
		return s.allow(reason.Public, &caller{}, "", "")
	}
	cr, r := s.creds.Extract(req.Headers)
	if r != "" {
		return Deny(r)
	}
	if cr.Key == "" && cr.Token == "" {
		return Deny(reason.MissingCredential)
	}
	var caller caller
	c := &caller
	if r := s.verify(ctx, tc, cr, st, now, c); r != "" {
		return c.deny(r)
	}
	if r := s.userDisabled(c); r != "" {
		return c.deny(r)
	}
	if r := s.keyMember(c); r != "" {
		return c.deny(r)
	}
	if r := s.sameTenant(c); r != "" {
		return c.deny(r)
	}
	if c.tier = s.grant(c); c.tier == nil || c.tier.rank < rt.tier.rank {
		return c.deny(reason.TierTooLow)
	}
	tenant, kind, r := s.tenant(req.Headers, c)
	if r != "" {
		return c.deny(r)
	}
	if r := s.tenantState(tenant, kind, c); r != "" {
		return c.deny(r)
	}
	// A role caps the tier its member reaches in the tenant: the route
	// needs at most the cap, and the cap is the tier the upstream hears of.
	if c.role = s.role(tenant, kind, c); c.role != nil && c.role.maxTier != nil && c.role.maxTier.rank < c.tier.rank {
		if c.role.maxTier.rank < rt.tier.rank {
			return c.deny(reason.TierTooLow)
		}
		c.tier = c.role.maxTier
	}
	if tenant == "" && rt.tenant == tenantRequired {
		return c.deny(reason.TenantRequired)
	}
	d := s.allow(reason.Allowed, c, tenant, kind)
	s.rateLimit(&d, c)
	s.charge(ctx, &d, req, st, st.admit, now, c)
	return d
}
