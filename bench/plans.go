package main

// This file measures what the rate limit metadata (CONTRACT §12) costs on
// the cached path: workload 2 (an API key and an already-verified RS256
// token) on the same policy without plans and with plans, each against
// the no-op server answering portcullis's own bytes for it, in one run.
// With plans every allow carries ratelimit_tenant, ratelimit_plan,
// ratelimit_key and the ratelimit_limit Struct: what deciding them costs
// is the change of portcullis's ratio to the no-op; what carrying the
// longer answer costs (the no-op pays it too) shows in both servers'
// absolute CPU per check.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

var plansBench = flag.Bool("plans", false, "instead of the table: workload 2 (the cached path) without and with plans in the policy, each beside the no-op: the cost of the rate limit metadata")

// plansYAML is what the plans policy adds to the bench policy: the key's
// tenant (acme) is on the default plan.
const plansYAML = `plans:
  free: { requests_per_unit: 60, unit: minute }
  pro:  { requests_per_unit: 6000, unit: minute }
default_plan: free
`

func (b *bench) plansBench(out io.Writer) error {
	// The fixture of workload 2 only: one key, one token of each issuer.
	*bigKeys, *nTokens, *cacheMem = 1, 1, 1
	if err := b.fixture(); err != nil {
		return err
	}
	base, err := os.ReadFile(b.policy)
	if err != nil {
		return err
	}
	withPlans := filepath.Join(b.dir, "plans-policy.yaml")
	if err := os.WriteFile(withPlans, append(base, plansYAML...), 0o644); err != nil {
		return err
	}
	n1, n50 := 2500, 20000
	if *quick {
		n1, n50 = 500, 4000
	}
	cached := checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + b.rsTokens[0]})
	req := func(int) *authv3.CheckRequest { return cached }
	ws := []workload{
		{2, "key + cached RS256 JWT, no plans", b.policy, n1, n50, req, true},
		{2, "key + cached RS256 JWT, plans", withPlans, n1, n50, req, true},
	}
	rep := &report{}
	size := map[string]int{}
	for _, w := range ws {
		resp, err := b.capture(w.policy, cached)
		if err != nil {
			return err
		}
		st, err := os.Stat(resp)
		if err != nil {
			return err
		}
		size[w.name] = int(st.Size())
		for _, conc := range []int{1, 50} {
			r, err := b.measure(w, conc, 0, resp)
			if err != nil {
				return err
			}
			rep.rows = append(rep.rows, r)
		}
	}
	if size[ws[1].name] <= size[ws[0].name] {
		return fmt.Errorf("the answer with plans (%d bytes) is no longer than without (%d): the policy hands over no rate limit", size[ws[1].name], size[ws[0].name])
	}
	header(out, command())
	fmt.Fprintf(out, "Workload 2 (`POST /images/1` with an API key and an already-verified RS256 token, every check allowed) on the bench policy, "+
		"then on the same policy with `plans` and `default_plan` added: every allow's answer then carries the four ratelimit_* metadata entries "+
		"(%d bytes, against %d). Each beside the no-op server answering portcullis's own bytes. Absolute figures are medians over the rounds; "+
		"ratios are medians of each round's portcullis/no-op ratio.\n\n", size[ws[1].name], size[ws[0].name])
	rep.table(out)
	fmt.Fprintln(out, "\nPlans on against plans off (\"within the noise\": the median ratio with plans lies within the range of the rounds' ratios without):")
	fmt.Fprintln(out, "\n| conc | figure | no plans: median (rounds' range) | plans: median (rounds' range) | within the noise |\n|---|---|---|---|---|")
	for i, conc := range []int{1, 50} {
		off, on := rep.rows[i], rep.rows[2+i] // rows: no plans at 1 and 50, then plans at 1 and 50
		for _, f := range []struct {
			name string
			of   func(result) float64
		}{{"CPU/check ÷ no-op's", cpu}, {"req/s ÷ no-op's", rps}, {"p99 ÷ no-op's", p99}} {
			lo, hi := spread(off, f.of)
			olo, ohi := spread(on, f.of)
			m := on.ratio(f.of)
			verdict := "yes"
			if m < lo || m > hi {
				verdict = "**no**"
			}
			fmt.Fprintf(out, "| %d | %s | %.2f× (%.2f–%.2f) | %.2f× (%.2f–%.2f) | %s |\n", conc, f.name, off.ratio(f.of), lo, hi, m, olo, ohi, verdict)
		}
		fmt.Fprintf(out, "| %d | CPU/check, absolute | portcullis %s, no-op %s | portcullis %s, no-op %s | |\n", conc,
			us(median(off.pc).cpuPerCheck), us(median(off.noop).cpuPerCheck), us(median(on.pc).cpuPerCheck), us(median(on.noop).cpuPerCheck))
	}
	return nil
}

// spread is the lowest and highest of a row's per-round ratios.
func spread(r *row, f func(result) float64) (lo, hi float64) {
	var v []float64
	for i := range min(len(r.noop), len(r.pc)) {
		if d := f(r.noop[i]); d > 0 {
			v = append(v, f(r.pc[i])/d)
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	sort.Float64s(v)
	return v[0], v[len(v)-1]
}
