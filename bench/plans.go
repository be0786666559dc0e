package main

// This file measures what the rate limit metadata (CONTRACT §12) costs on
// the cached path: workload 2 (an API key and an already-verified RS256
// token) on the same policy without plans and with plans, each against
// the no-op server answering portcullis's own bytes for it, in one run.
// With plans every allow carries ratelimit_tenant, ratelimit_plan,
// ratelimit_key and the ratelimit_limit Struct: what deciding them costs
// is, round by round, portcullis's ratio to the no-op with plans over its
// ratio without (each round runs the four servers back to back, so the
// machine's drift cancels); what carrying the longer answer costs (the
// no-op pays it too) shows in both servers' absolute CPU per check.

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
	resp := map[string]string{}
	size := map[string]int{}
	for _, w := range ws {
		if resp[w.name], err = b.capture(w.policy, cached); err != nil {
			return err
		}
		st, err := os.Stat(resp[w.name])
		if err != nil {
			return err
		}
		size[w.name] = int(st.Size())
	}
	if size[ws[1].name] <= size[ws[0].name] {
		return fmt.Errorf("the answer with plans (%d bytes) is no longer than without (%d): the policy hands over no rate limit", size[ws[1].name], size[ws[0].name])
	}
	rep := &report{}
	for _, conc := range []int{1, 50} {
		off, on, err := b.plansRounds(ws, conc, resp)
		if err != nil {
			return err
		}
		rep.rows = append(rep.rows, off, on)
	}
	header(out, command())
	fmt.Fprintf(out, "Workload 2 (`POST /images/1` with an API key and an already-verified RS256 token, every check allowed) on the bench policy, "+
		"and on the same policy with `plans` and `default_plan` added: every allow's answer then carries the four ratelimit_* metadata entries "+
		"(%d bytes, against %d). Each beside the no-op server answering portcullis's own bytes for it. A round runs the four servers back to back "+
		"(no-op and portcullis, without and with plans; the order reversed every other round). Absolute figures are medians over the rounds; "+
		"ratios are medians of each round's own.\n\n", size[ws[1].name], size[ws[0].name])
	rep.table(out)
	fmt.Fprintln(out, "\nWhat the metadata costs: in each round, portcullis's ratio to the no-op with plans over its ratio without "+
		"(1.00×: deciding the plan and writing the metadata cost nothing beyond the longer answer, which the no-op writes too). "+
		"Within the noise when the rounds' range holds 1.00×:")
	fmt.Fprintln(out, "\n| conc | figure | with plans ÷ without: median (rounds' range) | within the noise | CPU/check, portcullis without → with plans | the no-op's, same answers |\n|---|---|---|---|---|---|")
	for i, conc := range []int{1, 50} {
		off, on := rep.rows[2*i], rep.rows[2*i+1]
		for _, f := range []struct {
			name string
			of   func(result) float64
		}{{"CPU/check ÷ no-op's", cpu}, {"req/s ÷ no-op's", rps}, {"p99 ÷ no-op's", p99}} {
			m, lo, hi := relative(off, on, f.of)
			verdict := "yes"
			if lo > 1 || hi < 1 {
				verdict = "**no**"
			}
			abs := ""
			if f.name == "CPU/check ÷ no-op's" {
				abs = fmt.Sprintf("| %s → %s | %s → %s", us(median(off.pc).cpuPerCheck), us(median(on.pc).cpuPerCheck),
					us(median(off.noop).cpuPerCheck), us(median(on.noop).cpuPerCheck))
			} else {
				abs = "| | "
			}
			fmt.Fprintf(out, "| %d | %s | %.2f× (%.2f–%.2f) | %s %s |\n", conc, f.name, m, lo, hi, verdict, abs)
		}
	}
	return nil
}

// plansRounds runs -rounds rounds of the four servers of workload 2
// without and with plans (ws) at concurrency conc.
func (b *bench) plansRounds(ws []workload, conc int, resp map[string]string) (off, on *row, err error) {
	off = &row{num: ws[0].num, name: ws[0].name, conc: conc}
	on = &row{num: ws[1].num, name: ws[1].name, conc: conc}
	type run struct {
		w    workload
		noop bool
		r    *row
	}
	order := []run{{ws[0], true, off}, {ws[0], false, off}, {ws[1], true, on}, {ws[1], false, on}}
	for round := range *rounds {
		runs := order
		if round%2 == 1 {
			runs = []run{order[3], order[2], order[1], order[0]}
		}
		for _, x := range runs {
			n := x.w.n1
			if conc == 50 {
				n = x.w.n50
			}
			var s *server
			if x.noop {
				s, err = b.startNoop(resp[x.w.name])
			} else {
				s, err = b.start(x.w.policy)
			}
			if err != nil {
				return nil, nil, err
			}
			res, err := load(s, conc, n, x.w.req)
			s.stop()
			if err != nil {
				return nil, nil, err
			}
			if !x.noop && res.allowed != n {
				return nil, nil, fmt.Errorf("%s: %d of %d allowed: the fixture is wrong; portcullis check says:\n%s", x.w.name, res.allowed, n, b.explain(x.w.policy, x.w.req(0)))
			}
			if x.noop {
				x.r.noop = append(x.r.noop, res)
			} else {
				x.r.pc = append(x.r.pc, res)
			}
			logf("%s c=%d noop=%v round %d: %.0f req/s, p99 %s, %s CPU/check", x.w.name, conc, x.noop, round+1, res.rps, us(res.p99), us(res.cpuPerCheck))
		}
	}
	return off, on, nil
}

// relative is, round by round, on's portcullis/no-op ratio over off's: its
// median, lowest and highest.
func relative(off, on *row, f func(result) float64) (m, lo, hi float64) {
	var v []float64
	for i := range min(len(off.noop), len(off.pc), len(on.noop), len(on.pc)) {
		a, b := f(off.noop[i]), f(on.noop[i])
		if a > 0 && b > 0 && f(off.pc[i]) > 0 {
			v = append(v, (f(on.pc[i])/b)/(f(off.pc[i])/a))
		}
	}
	if len(v) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(v)
	return v[len(v)/2], v[0], v[len(v)-1]
}
