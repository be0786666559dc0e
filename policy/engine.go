package policy

import (
	"context"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/reason"
)

// EngineOptions tune an Engine. Zero values take the defaults noted.
type EngineOptions struct {
	TokenCacheSize   int              // verified tokens kept; default 100,000
	FailureCacheSize int              // failed tokens kept; default 10,000
	FailureTTL       time.Duration    // how long a failure is remembered; default 10s
	Now              func() time.Time // clock; default time.Now
	// OnPanic, when set, is told of every panic Decide recovered from (the
	// check was denied 503), with the stack of the goroutine that panicked.
	// It must be safe for concurrent use.
	OnPanic func(value any, stack []byte)
}

// Engine decides requests against the current Snapshot. It is safe for
// concurrent use: Decide pins one snapshot per call, and Swap publishes a new
// one atomically without disturbing checks in flight.
type Engine struct {
	snap    atomic.Pointer[Snapshot]
	tokens  *tokenCache
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
	e := &Engine{tokens: cache.NewTokens[*token, failure](opts.TokenCacheSize, opts.FailureCacheSize, opts.FailureTTL), now: opts.Now, onPanic: opts.OnPanic}
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
	defer func() {
		if p := recover(); p != nil {
			d = deny(reason.Internal)
			if e.onPanic != nil {
				e.onPanic(p, debug.Stack())
			}
		}
	}()
	s := e.snap.Load()
	if s == nil {
		return deny(reason.Internal)
	}
	d = s.decide(ctx, e.tokens, req, e.now())
	d.Policy = s.version
	return d
}

// caller is who the verified credentials say is calling.
type caller struct {
	key   *Key
	token *token
	user  string
	tier  *tier
}

func (s *Snapshot) decide(ctx context.Context, tc *tokenCache, req Request, now time.Time) Decision {
	if !methodToken(req.Method) {
		return deny(reason.BadRequest)
	}
	path, ok := routePath(req.Path)
	if !ok {
		return deny(reason.BadPath)
	}
	rt := s.match(req.Method, path)
	if rt == nil {
		return deny(reason.NoRoute)
	}
	if rt.public {
		return s.allow(reason.Public, &caller{}, "", "")
	}
	cr, r := s.extract(req.Headers)
	if r != "" {
		return deny(r)
	}
	if cr.key == "" && cr.token == "" {
		return deny(reason.MissingCredential)
	}
	c, d := s.authenticate(ctx, tc, cr, now)
	if d.Reason != "" {
		return d
	}
	deny := func(r reason.Code) Decision { return s.denyAs(r, c, d) }
	if r := s.sameTenant(c); r != "" {
		return deny(r)
	}
	c.tier = s.grant(c)
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	if c.tier == nil || c.tier.rank < rt.tier.rank {
		return deny(reason.TierTooLow)
	}
	tenant, kind, r := s.tenant(req.Headers, c)
	if r != "" {
		return deny(r)
	}
	if tenant == "" && rt.tenant == tenantRequired {
		return deny(reason.TenantRequired)
	}
	return s.allow(reason.Allowed, c, tenant, kind)
}

// authenticate verifies the presented key and token. On failure the
// returned Decision is the deny; otherwise it carries only the identity.
func (s *Snapshot) authenticate(ctx context.Context, tc *tokenCache, cr credentials, now time.Time) (*caller, Decision) {
	c := &caller{}
	var d Decision
	if cr.key != "" {
		k, r := s.lookupKey(cr.key, now)
		if k != nil {
			d.Credential = k.ID
		}
		if r != "" {
			return c, s.denyAs(r, c, d)
		}
		c.key = k
		c.user = k.User
	}
	if cr.token != "" {
		t, r := s.verifyToken(ctx, tc, cr.token, now)
		if r != "" {
			return c, s.denyAs(r, c, d)
		}
		c.token = t
		d.Issuer = t.issuer.id
		if c.user == "" {
			c.user = t.user
		}
	}
	d.User = c.user
	return c, d
}

func (s *Snapshot) denyAs(r reason.Code, c *caller, id Decision) Decision {
	d := deny(r)
	d.Credential, d.User, d.Issuer = id.Credential, c.user, id.Issuer
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	return d
}

// sameTenant denies a key bound to a tenant (or user) combined with a token
// of another tenant (or user): no cross-tenant confusion.
func (s *Snapshot) sameTenant(c *caller) reason.Code {
	k, t := c.key, c.token
	if k == nil || t == nil {
		return ""
	}
	if k.User != "" && t.user != "" && k.User != t.user {
		return reason.TenantMismatch
	}
	if k.Tenant == "" {
		return ""
	}
	if t.tenant != "" {
		if s.canonical(t.tenant) != k.Tenant {
			return reason.TenantMismatch
		}
		return ""
	}
	if !s.isMember(k.Tenant, t.user) {
		return reason.TenantMismatch
	}
	return ""
}

// grant returns the highest tier the caller's credentials meet, or nil.
func (s *Snapshot) grant(c *caller) *tier {
	for i := len(s.tiers) - 1; i >= 0; i-- {
		t := s.tiers[i]
		for j := range t.reqs {
			if t.reqs[j].met(c, t) {
				return t
			}
		}
	}
	return nil
}

func (r *requirement) met(c *caller, t *tier) bool {
	k := c.key
	switch r.key {
	case keyCustomer:
		if k == nil || k.Superuser {
			return false
		}
	case keySuperuser:
		if k == nil || !k.Superuser {
			return false
		}
	case keyAny:
		if k == nil {
			return false
		}
	}
	if r.key != keyNone && k.tier.rank < t.rank {
		return false // a key never reaches above its own tier
	}
	if r.issuer == nil {
		return true
	}
	tok := c.token
	if tok == nil || tok.issuer != r.issuer {
		return false
	}
	for _, sc := range r.scopes {
		if !slices.Contains(tok.scopes, sc) {
			return false
		}
	}
	if len(r.groups) > 0 && !slices.ContainsFunc(r.groups, func(g string) bool { return slices.Contains(tok.groups, g) }) {
		return false
	}
	return r.tokenUse == "" || tok.use == r.tokenUse
}

// canonical returns the tenant name v (a name or an alias) stands for, or
// v itself when the policy does not name it.
func (s *Snapshot) canonical(v string) string {
	if n, ok := s.aliases[v]; ok {
		return n
	}
	return v
}

// known reports whether name is a tenant of the policy or of some key.
func (s *Snapshot) known(name string) bool {
	_, ok := s.tenants[name]
	return ok || s.keyTenants[name]
}

func (s *Snapshot) isMember(tenant, user string) bool {
	t := s.tenants[tenant]
	return t != nil && user != "" && t.members[user]
}

// tenant resolves the tenant the caller acts for: the one a context header
// selects, if the caller may act for it; else the key's tenant, the token's
// tenant claim or the caller's personal context.
func (s *Snapshot) tenant(h map[string]string, c *caller) (string, string, reason.Code) {
	var name, kind string
	for _, rule := range s.contexts {
		raw, sent := h[rule.header]
		if !sent {
			continue
		}
		// Sent at all, even empty, by a tier that may not: 403.
		if rule.tiers != nil && !rule.tiers[c.tier.name] {
			return "", "", reason.ContextNotAllowed
		}
		v := strings.TrimSpace(raw)
		if v == "" {
			continue
		}
		n, k, r := s.selectTenant(v, c)
		if r != "" {
			return "", "", r
		}
		if name != "" && n != name {
			return "", "", reason.ContextConflict
		}
		name, kind = n, k
	}
	if name != "" {
		return name, kind, ""
	}
	return s.baseTenant(c)
}

func (s *Snapshot) baseTenant(c *caller) (string, string, reason.Code) {
	switch {
	case c.key != nil && c.key.Tenant != "":
		return c.key.Tenant, KindOrganization, ""
	case c.token != nil && c.token.tenant != "":
		return s.canonical(c.token.tenant), KindOrganization, ""
	case s.personal && c.user != "":
		if s.tenantNamed(c.user) {
			// The user's id is a tenant's name or alias: acting "as
			// themself" would put that tenant in the tenant header.
			return "", "", reason.TenantNotAllowed
		}
		return c.user, KindPersonal, ""
	}
	return "", "", ""
}

// tenantNamed reports whether v is the name or an alias of a tenant of the
// policy, or a tenant some key is bound to: users and tenants share the
// tenant header, so no personal context may carry such a value.
func (s *Snapshot) tenantNamed(v string) bool {
	_, ok := s.aliases[v]
	return ok || s.keyTenants[v]
}

// selectTenant checks a context header value against what the caller may
// act for: a key bound to a tenant acts for it alone; otherwise the caller's
// own user id (personal), a tenant it is a member of, its token's tenant, or
// for tiers with any_tenant, any known tenant.
func (s *Snapshot) selectTenant(v string, c *caller) (string, string, reason.Code) {
	if c.key != nil && c.key.Tenant != "" {
		if s.canonical(v) == c.key.Tenant {
			return c.key.Tenant, KindOrganization, ""
		}
		if !c.tier.anyTenant {
			return "", "", reason.TenantNotAllowed
		}
	}
	if s.personal && c.user != "" && v == c.user && !s.tenantNamed(v) {
		return c.user, KindPersonal, ""
	}
	n := s.canonical(v)
	if !s.known(n) {
		return "", "", reason.TenantNotAllowed
	}
	if c.tier.anyTenant || s.isMember(n, c.user) ||
		(c.token != nil && c.token.tenant != "" && s.canonical(c.token.tenant) == n) {
		return n, KindOrganization, ""
	}
	return "", "", reason.TenantNotAllowed
}

// allow builds the allow decision: every upstream header is set when it has
// a value and removed otherwise; context headers (and credentials, when
// stripped) are always removed. No name is in both lists.
func (s *Snapshot) allow(r reason.Code, c *caller, tenant, kind string) Decision {
	d := Decision{Allow: true, Status: 200, Reason: r, Tenant: tenant, TenantKind: kind, User: c.user}
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	if c.key != nil {
		d.Credential = c.key.ID
	}
	if c.token != nil {
		d.Issuer = c.token.issuer.id
	}
	d.SetHeaders = make([]Header, 0, 5)
	d.RemoveHeaders = make([]string, 0, len(s.alwaysRemove)+5)
	d.RemoveHeaders = append(d.RemoveHeaders, s.alwaysRemove...)
	for _, h := range [...]Header{
		{s.up.tenant, d.Tenant}, {s.up.tenantKind, d.TenantKind}, {s.up.user, d.User},
		{s.up.tier, d.Tier}, {s.up.credential, d.Credential},
	} {
		switch {
		case h.Name == "":
		case h.Value == "":
			d.RemoveHeaders = append(d.RemoveHeaders, h.Name)
		default:
			d.SetHeaders = append(d.SetHeaders, h)
		}
	}
	return d
}
