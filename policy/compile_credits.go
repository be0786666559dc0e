package policy

// This file compiles credits (CONTRACT §11): what each route costs, and
// what a check does with a tenant without a wallet or a store it cannot
// reach; and the charge step of a check.

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/reason"
)

// costRule is one cost rule: the route matchers' semantics, and the cost.
type costRule struct {
	match route
	cost  int64
}

// creditsConf is the policy's credits block (nil: nothing is metered).
type creditsConf struct {
	costs           []costRule
	denyUnmetered   bool // a tenant without a wallet: 429 instead of free
	allowOnOutage   bool // no units in hand and the store unreachable: admit, charge later
	remainingHeader string
}

// maxCost bounds a rule's cost (|units| of a grant are bounded by 10^12).
const maxCost = 1_000_000_000

func (c *compiler) credits(f *policyFile) {
	cf := f.Credits
	if cf == nil {
		if f.UpstreamHeaders.CreditsRemaining != nil && *f.UpstreamHeaders.CreditsRemaining != "" {
			c.errf("upstream_headers.credits_remaining", "the policy meters nothing (credits)")
		}
		return
	}
	cc := &creditsConf{}
	if f.KeysStore == nil {
		c.errf("credits", "wallets live in the key store: configure keys_store")
	}
	switch cf.Unmetered {
	case "", "allow":
	case "deny":
		cc.denyUnmetered = true
	default:
		c.errf("credits.unmetered", "want allow or deny, got %q", cf.Unmetered)
	}
	switch cf.OnOutage {
	case "", "deny":
	case "allow":
		cc.allowOnOutage = true
	default:
		c.errf("credits.on_outage", "want deny or allow, got %q", cf.OnOutage)
	}
	if len(cf.Costs) == 0 {
		c.errf("credits.costs", "list at least one cost rule (a route no rule matches is free)")
	}
	for i, rf := range cf.Costs {
		p := fmt.Sprintf("credits.costs[%d]", i)
		r := costRule{match: route{prefix: rf.Prefix, exact: rf.Path}, cost: rf.Cost}
		if (rf.Prefix == "") == (rf.Path == "") {
			c.errf(p, "set exactly one of prefix and path")
		} else {
			c.routePattern(p, &r.match)
		}
		for j, h := range rf.Hosts {
			hp, ok := parseHostPattern(h)
			if !ok {
				c.errf(fmt.Sprintf("%s.hosts[%d]", p, j), "want a host name like api.example.com or *.example.com, got %q", h)
			}
			r.match.hosts = append(r.match.hosts, hp)
		}
		for j, m := range rf.Methods {
			if !methodToken(m) {
				c.errf(fmt.Sprintf("%s.methods[%d]", p, j), "want an upper-case method like POST, got %q", m)
			}
			r.match.methods = append(r.match.methods, m)
		}
		if rf.Cost < 1 || rf.Cost > maxCost {
			c.errf(p+".cost", "want a whole number from 1 to %d", maxCost)
		}
		for j, earlier := range cc.costs {
			if covers(&earlier.match, &r.match) {
				c.errf(p, "no request can reach this rule: credits.costs[%d] matches every request it would (first match wins)", j)
				break
			}
		}
		cc.costs = append(cc.costs, r)
	}
	cc.remainingHeader = c.s.upstream.creditsRemaining
	c.s.credits = cc
}

// covers reports whether every request b matches, a matches too (b is
// shadowed when a comes first).
func covers(a, b *route) bool {
	if len(a.methods) > 0 && (len(b.methods) == 0 || !subset(b.methods, a.methods)) {
		return false
	}
	if len(a.hosts) > 0 {
		if len(b.hosts) == 0 {
			return false
		}
		for _, h := range b.hosts {
			if !slices.Contains(a.hosts, h) {
				return false
			}
		}
	}
	switch {
	case a.exact != "":
		return b.exact == a.exact
	case b.exact != "":
		return underPrefix(b.exact, a.prefix)
	}
	return underPrefix(b.prefix, a.prefix)
}

func subset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// underPrefix reports whether path (or every path under prefix path) is
// matched by prefix, as route.matches reads prefixes.
func underPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/')
}

// cost returns what the request costs (0: free: no rule matches).
func (cc *creditsConf) cost(method, path, host string) int64 {
	if cc == nil {
		return 0
	}
	p, ok := routePath(path)
	if !ok {
		return 0
	}
	h, _ := requestHost(host)
	for i := range cc.costs {
		if cc.costs[i].match.matches(method, p, h) {
			return cc.costs[i].cost
		}
	}
	return 0
}

// Admitter admits a metered check against a wallet: credits.Ledger.
type Admitter interface {
	Admit(ctx context.Context, tenant string, cost int64, w credits.Wallet) (credits.Outcome, int64)
	Owe(tenant string, cost int64, w credits.Wallet)
}

// charge meters an allow d: its cost on its route, charged to the wallet
// of the tenant it acts for, never another (without an Admitter, offline,
// it only says so); exhausted is 429 (with Retry-After until the wallet's
// next refill), a store it cannot reach with no units in hand is 503
// unless on_outage: allow. It runs last, so a denied check never charges.
// What every metered check runs is kept here, in a small frame; the rest
// is chargeOther's (a check's goroutine grows its stack, at a cost, when
// a call goes deeper than it has).
func (s *Snapshot) charge(ctx context.Context, d *Decision, req Request, st *storeView, a Admitter, now time.Time, c *caller) {
	cc := s.credits
	if cc == nil || !d.Allow {
		return
	}
	cost := cc.cost(req.Method, req.Path, req.Host)
	if cost == 0 {
		return
	}
	d.Cost, d.Wallet = cost, d.Tenant
	w, metered := st.wallets.Lookup(d.Tenant)
	if a == nil || d.Tenant == "" || !metered {
		s.chargeOther(d, st, a, metered, c)
		return
	}
	outcome, remaining := a.Admit(ctx, d.Tenant, cost, w)
	if outcome != credits.Admitted {
		s.refused(d, a, outcome, cost, w, now, c)
		return
	}
	d.CreditsRemaining = remaining
	if cc.remainingHeader != "" {
		s.remaining(d)
	}
}

// chargeOther is charge offline (check, test: what the request costs and
// the wallet that would pay, unless the store is read and holds none for
// it; nothing charged, nothing refused) or for a tenant without a wallet
// (unmetered: allow or deny).
func (s *Snapshot) chargeOther(d *Decision, st *storeView, a Admitter, metered bool, c *caller) {
	if a == nil {
		if st.wallets != nil && !metered {
			d.Wallet = ""
		}
		return
	}
	d.Wallet = ""
	if s.credits.denyUnmetered {
		*d = c.deny(reason.CreditsExhausted)
	}
}

// refused is charge when the ledger did not admit: the wallet was deleted
// meanwhile (unmetered), exhausted (429), or the store unreachable with no
// units in hand (503, or admitted as debt under on_outage: allow).
func (s *Snapshot) refused(d *Decision, a Admitter, outcome credits.Outcome, cost int64, w credits.Wallet, now time.Time, c *caller) {
	cc := s.credits
	switch outcome {
	case credits.NoWallet: // deleted since the mirror's view
		d.Wallet = ""
		if cc.denyUnmetered {
			*d = c.deny(reason.CreditsExhausted)
		}
	case credits.Exhausted:
		deny := c.deny(reason.CreditsExhausted)
		deny.Cost, deny.Wallet = cost, d.Tenant
		if !w.NextRefill.IsZero() && w.NextRefill.After(now) {
			deny.RetryAfter = int(math.Ceil(w.NextRefill.Sub(now).Seconds()))
		}
		*d = deny
	default: // Unavailable
		if !cc.allowOnOutage {
			*d = c.deny(reason.StoreUnavailable)
			return
		}
		a.Owe(d.Tenant, cost, w)
		if cc.remainingHeader != "" {
			s.remaining(d)
		}
	}
}

// remaining sends the balance after the charge upstream: set, so no longer
// removed (a header is in one list only).
func (s *Snapshot) remaining(d *Decision) {
	h := s.credits.remainingHeader
	d.SetHeaders = append(d.SetHeaders, Header{Name: h, Value: strconv.FormatInt(d.CreditsRemaining, 10)})
	d.RemoveHeaders = slices.DeleteFunc(slices.Clone(d.RemoveHeaders), func(n string) bool { return n == h })
	d.Volatile = true
}

// Metered reports whether the policy meters anything (a credits block):
// without one, wallets are off.
func (s *Snapshot) Metered() bool { return s.credits != nil }
