package policy

// This file compiles the policy's plans: the rate limit each tenant's
// callers share, which the proxy's rate limit service enforces from the
// dynamic metadata of every allow (CONTRACT §12). Portcullis keeps no
// counter of its own.

import (
	"fmt"
	"math"
	"strings"

	"github.com/portcullis/portcullis/keys"
)

// plan is one plan of the policy.
type plan struct {
	name  string
	limit keys.RateLimit
}

// planTable holds the plans by name, and the plan of tenants without one
// (nil when the policy has no plans: no rate limit metadata at all).
type planTable struct {
	byName map[string]*plan
	def    *plan
}

func (c *compiler) plans(f *policyFile) {
	t := &c.s.plans
	if len(f.Plans) == 0 {
		if f.DefaultPlan != "" {
			c.errf("default_plan", "the policy defines no plans")
		}
		for _, name := range sortedKeys(f.Tenants) {
			if f.Tenants[name].Plan != "" {
				c.errf("tenants."+name+".plan", "the policy defines no plans")
			}
		}
		return
	}
	t.byName = map[string]*plan{}
	for _, name := range sortedKeys(f.Plans) {
		lim, err := LimitOf(f.Plans[name].RequestsPerUnit, f.Plans[name].Unit)
		if err != nil {
			c.errf("plans."+name, "%v", err)
		}
		t.byName[name] = &plan{name: name, limit: lim}
	}
	switch t.def = t.byName[f.DefaultPlan]; {
	case f.DefaultPlan == "":
		c.errf("default_plan", "name the plan of tenants without one (%s)", listing("plans", sortedKeys(f.Plans)))
	case t.def == nil:
		c.errf("default_plan", "unknown plan %q (%s)", f.DefaultPlan, listing("plans", sortedKeys(f.Plans)))
	}
	for _, name := range sortedKeys(f.Tenants) {
		if p := f.Tenants[name].Plan; p != "" {
			if t.byName[p] == nil {
				c.errf("tenants."+name+".plan", "unknown plan %q (%s)", p, listing("plans", sortedKeys(f.Plans)))
			}
			c.s.tenants.byName[name].plan = p
		}
	}
}

// LimitOf checks a rate limit as a policy or a caller writes it: a whole
// number of requests from 1 to 2^32-1 per second, minute, hour, day, month
// or year.
func LimitOf(perUnit int64, unit string) (keys.RateLimit, error) {
	u := keys.UnitOf(strings.ToUpper(unit))
	switch {
	case perUnit < 1 || perUnit > math.MaxUint32:
		return keys.RateLimit{}, fmt.Errorf("requests_per_unit: want a whole number from 1 to %d", uint32(math.MaxUint32))
	case u == 0:
		return keys.RateLimit{}, fmt.Errorf("unit: want second, minute, hour, day, month or year")
	}
	return keys.RateLimit{PerUnit: uint32(perUnit), Unit: u}, nil
}

// HasPlan reports whether the policy defines plan name.
func (s *Snapshot) HasPlan(name string) bool { return s.plans.byName[name] != nil }

// Plans returns the policy's plan names, sorted.
func (s *Snapshot) Plans() []string { return sortedKeys(s.plans.byName) }

// rateLimit fills d's rate limit for the tenant the caller acts for: the
// key's own limit when it has one (its subject the key), else the plan's
// (its subject the whole tenant: every caller acting for it shares it).
func (s *Snapshot) rateLimit(d *Decision, c *caller) {
	if s.plans.def == nil || d.Tenant == "" {
		return
	}
	p := s.plans.def
	name := ""
	if t := s.tenants.byName[d.Tenant]; t != nil {
		name = t.plan
	} else if c.dir != nil && d.TenantKind == KindOrganization {
		_, name, _ = c.dir.State(d.Tenant)
	}
	if q := s.plans.byName[name]; q != nil {
		p = q
	}
	d.Limit = Limit{Plan: p.name, Key: AnyKey, RateLimit: p.limit}
	if k := c.apiKey(); k != nil && k.Limit.PerUnit > 0 {
		d.Limit.Key, d.Limit.RateLimit = k.ID, k.Limit
	}
}
