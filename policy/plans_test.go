package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
)

const plansPolicy = `version: 1
credentials:
  api_key: { bearer: true }
personal_tenants: true
keys_store:
  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }
directory: { store: true }
plans:
  free: { requests_per_unit: 60, unit: minute }
  pro:  { requests_per_unit: 6000, unit: MINUTE }
  batch: { requests_per_unit: 100000, unit: day }
default_plan: free
tenants:
  org-pro: { plan: pro, members: [u-alice] }
  org-plain: { members: [u-alice] }
tiers:
  service: { requires_any: [ { key: any } ] }
context:
  - { header: ib-context }
routes:
  - { prefix: /, tier: service, tenant: optional }
`

// TestPlans: every allow carries the rate limit of the tenant it acts for
// (CONTRACT §12): a policy tenant's plan, a store tenant's plan (changed
// live), the default plan for tenants without one and personal contexts;
// a key's own limit beats the plan and names the key; denies carry none.
func TestPlans(t *testing.T) {
	s, err := loadString(t, plansPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	kb := keys.NewIndexBuilder(4)
	for _, k := range []struct {
		id, tenant, user string
		limit            keys.RateLimit
	}{
		{"alice", "", "u-alice", keys.RateLimit{}},
		{"fast", "", "u-alice", keys.RateLimit{PerUnit: 5, Unit: keys.Second}},
		{"store-key", "org-store", "", keys.RateLimit{}},
	} {
		kb.AddValue(keys.DigestOf(k.id), keys.NewAPIKey(k.id, k.tenant, k.user, "service", false, false, time.Time{}, k.limit))
	}
	b := directory.NewBuilder(1, 0, 0)
	b.Tenant(directory.Tenant{ID: "org-store", Plan: "batch"})
	st := &store{keys: kb.Build(), dir: directory.NewView(b.Build(), directory.NewLayer())}
	eng := policy.NewEngine(s, policy.EngineOptions{Store: st})
	decide := func(key, ctx string) policy.Decision {
		h := map[string]string{"authorization": "Bearer " + key}
		if ctx != "" {
			h["ib-context"] = ctx
		}
		return eng.Decide(context.Background(), policy.Request{Method: "GET", Path: "/x", Headers: h})
	}
	meta := func(d policy.Decision) string {
		var parts []string
		d.EachMetadata(func(k, v string) {
			if strings.HasPrefix(k, "ratelimit_") {
				parts = append(parts, k+"="+v)
			}
		})
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		name, key, ctx, meta string
		limit                keys.RateLimit
	}{
		{"a policy tenant's plan", "alice", "org-pro", "ratelimit_tenant=org-pro ratelimit_plan=pro ratelimit_key=*", keys.RateLimit{PerUnit: 6000, Unit: keys.Minute}},
		{"no plan: the default", "alice", "org-plain", "ratelimit_tenant=org-plain ratelimit_plan=free ratelimit_key=*", keys.RateLimit{PerUnit: 60, Unit: keys.Minute}},
		{"personal: the default", "alice", "", "ratelimit_tenant=u-alice ratelimit_plan=free ratelimit_key=*", keys.RateLimit{PerUnit: 60, Unit: keys.Minute}},
		{"a store tenant's plan", "store-key", "", "ratelimit_tenant=org-store ratelimit_plan=batch ratelimit_key=*", keys.RateLimit{PerUnit: 100000, Unit: keys.Day}},
		{"a key's own limit beats the plan", "fast", "org-pro", "ratelimit_tenant=org-pro ratelimit_plan=pro ratelimit_key=fast", keys.RateLimit{PerUnit: 5, Unit: keys.Second}},
	} {
		d := decide(tc.key, tc.ctx)
		if !d.Allow || meta(d) != tc.meta || d.Limit.RateLimit != tc.limit {
			t.Errorf("%s: allow=%v %s {%s} %+v, want {%s} %+v", tc.name, d.Allow, d.Reason, meta(d), d.Limit.RateLimit, tc.meta, tc.limit)
		}
	}
	if d := decide("nobody", ""); d.Allow || meta(d) != "" || d.Limit.PerUnit != 0 {
		t.Errorf("a deny carries a limit: %s", meta(d))
	}
	// The store tenant moves to another plan: the next check says so.
	st.change(directory.Changes{Tenants: []directory.Tenant{{ID: "org-store", Plan: "pro"}}})
	if d := decide("store-key", ""); d.Limit.Plan != "pro" || d.Limit.PerUnit != 6000 {
		t.Errorf("after the plan change: %+v", d.Limit)
	}
	// A policy without plans hands no limit over.
	noPlans, err := loadString(t, strings.NewReplacer("plans:\n", "x-plans:\n", "default_plan: free\n", "", " plan: pro,", "").Replace(
		strings.Split(plansPolicy, "plans:\n")[0]+strings.Split(plansPolicy, "default_plan: free\n")[1]), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := policy.NewEngine(noPlans, policy.EngineOptions{Store: st}).Decide(context.Background(),
		policy.Request{Method: "GET", Path: "/x", Headers: map[string]string{"authorization": "Bearer alice"}})
	if !d.Allow || meta(d) != "" {
		t.Errorf("no plans: %v %s {%s}", d.Allow, d.Reason, meta(d))
	}
}

// TestPlanValidation: plans hold whole request counts in Envoy's units; a
// default plan is named and exists; a tenant's plan exists.
func TestPlanValidation(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"zero requests", "requests_per_unit: 60,", "requests_per_unit: 0,", "plans.free: requests_per_unit: want a whole number"},
		{"too many", "requests_per_unit: 60,", "requests_per_unit: 4294967296,", "plans.free: requests_per_unit"},
		{"a bad unit", "unit: minute }", "unit: fortnight }", "plans.free: unit: want second, minute"},
		{"no default", "default_plan: free\n", "", "default_plan: name the plan"},
		{"an unknown default", "default_plan: free", "default_plan: gold", `default_plan: unknown plan "gold"`},
		{"an unknown tenant plan", "plan: pro,", "plan: gold,", `tenants.org-pro.plan: unknown plan "gold"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, strings.Replace(plansPolicy, tc.from, tc.to, 1), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant %s", err, tc.want)
			}
		})
	}
}
