package main

// This file measures what metering costs on the cached path (go run ./bench
// -credits): workload 2 (an API key and an already-verified RS256 token)
// on the bench policy with its keys store, without and with a credits
// block charging every request to the key's tenant's wallet, each beside
// the no-op answering portcullis's own bytes for it. With credits every
// allow spends a unit this replica holds (atomics, no call) and, every few
// thousand checks, takes the next block from PostgreSQL off the check's
// path.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/store"
)

var (
	creditsBench   = flag.Bool("credits", false, "instead of the table: workload 2 (the cached path) on a policy with a keys store, without and with credits charging every check to the key's tenant's wallet, each beside the no-op")
	creditsProfile = flag.String("credits-cpuprofile", "", "with -credits: instead of the rounds, write CPU profiles of the replica without (PATH.plain) and with credits (PATH) under the load, -profile-seconds each")
)

// creditsYAML meters every request the bench policy routes: one unit,
// charged to the key's tenant (acme).
const creditsYAML = `credits:
  costs:
    - { prefix: /images, cost: 1 }
`

func (b *bench) creditsBenchmark(out io.Writer) error {
	*bigKeys, *nTokens, *cacheMem = 1, 1, 1
	if err := b.fixture(); err != nil {
		return err
	}
	base, err := os.ReadFile(b.policy)
	if err != nil {
		return err
	}
	withStore := strings.Replace(string(base), "keys_file:", "keys_store:\n  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }\nkeys_file:", 1)
	plain, metered := filepath.Join(b.dir, "store-policy.yaml"), filepath.Join(b.dir, "credits-policy.yaml")
	if err := os.WriteFile(plain, []byte(withStore), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(metered, []byte(withStore+creditsYAML), 0o644); err != nil {
		return err
	}
	logf("starting PostgreSQL (fsync and synchronous commits on)")
	pg, err := testkit.StartPostgreSQL()
	if err != nil {
		return err
	}
	defer pg.Remove()
	dsn, err := createDatabase(pg, "credits")
	if err != nil {
		return err
	}
	if err := creditsWallet(dsn); err != nil {
		return err
	}
	req := checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + b.rsTokens[0]})
	respPlain, err := b.captureStore(plain, dsn, req)
	if err != nil {
		return err
	}
	respMetered, err := b.captureStore(metered, dsn, req)
	if err != nil {
		return err
	}
	if *creditsProfile != "" {
		for _, p := range []struct{ policy, path string }{{plain, *creditsProfile + ".plain"}, {metered, *creditsProfile}} {
			if err := b.profileStore(p.policy, dsn, p.path, req); err != nil {
				return err
			}
		}
		return nil
	}
	type way struct {
		name, policy, resp string // policy "" for the no-op
	}
	ways := []way{
		{"no-op (the keys store policy's answer)", "", respPlain},
		{"portcullis, keys store, no credits", plain, ""},
		{"no-op (the metered answer: cost and wallet in the metadata)", "", respMetered},
		{"portcullis, keys store, every check charged 1 unit", metered, ""},
	}
	count := 40000
	if *quick {
		count = 8000
	}
	nRounds := min(*rounds, 5)
	res := make([][]result, len(ways))
	for r := range nRounds {
		for k := range ways {
			i := (k + r) % len(ways)
			w := ways[i]
			var s *server
			if w.policy == "" {
				s, err = b.startNoop(w.resp)
			} else if s, err = b.startStore(w.policy, dsn); err == nil {
				<-s.loaded
			}
			if err != nil {
				return err
			}
			got, err := load(s, 50, count, func(int) *authv3.CheckRequest { return req })
			s.stop()
			if err != nil {
				return err
			}
			if w.policy != "" && got.allowed != count {
				return fmt.Errorf("%s: %d of %d allowed; portcullis check says:\n%s", w.name, got.allowed, count, b.explain(w.policy, req))
			}
			logf("credits: %s, round %d: %.0f req/s, %s CPU/check", w.name, r+1, got.rps, us(got.cpuPerCheck))
			res[i] = append(res[i], got)
		}
	}
	ratio := func(a, b int, f func(result) float64) float64 {
		var v []float64
		for r := range nRounds {
			v = append(v, f(res[a][r])/max(f(res[b][r]), 1e-12))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	header(out, command())
	fmt.Fprintf(out, "Workload 2 (`POST /images/1` with an API key and an already-verified RS256 token, every check allowed) at concurrency 50, "+
		"%d checks a run, %d rounds, each round every way back to back in a rotating order, each a fresh process on one PostgreSQL "+
		"(the wallet holds 10^12 units, so it never runs dry); medians, ratios the median of each round's own:\n\n", count, nRounds)
	fmt.Fprintln(out, "| way | req/s | p50 | p99 | CPU/check | CPU ÷ no-op | req/s ÷ no-op | CPU ÷ without credits |\n|---|---|---|---|---|---|---|---|")
	for i, w := range ways {
		m := median(res[i])
		cpuR, rpsR, vs := "", "", ""
		if i == 1 || i == 3 {
			cpuR, rpsR = fmt.Sprintf("%.2f×", ratio(i, i-1, cpu)), fmt.Sprintf("%.2f×", ratio(i, i-1, rps))
		}
		if i == 3 {
			vs = fmt.Sprintf("%.2f×", ratio(3, 1, cpu))
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %s | %s | %s |\n", w.name, m.rps, us(m.p50), us(m.p99), us(m.cpuPerCheck), cpuR, rpsR, vs)
	}
	c, t := ratio(3, 2, cpu), ratio(3, 2, rps)
	fmt.Fprintf(out, "\nTargets (issue 24): a metered cached check's CPU ≤ 1.2× the no-op's: **%.2f×** (%s); throughput ≥ 0.9×: **%.2f×** (%s).\n",
		c, met(c <= 1.2), t, met(t >= 0.9))
	return nil
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// creditsWallet gives the bench key's tenant a wallet that never runs dry.
func creditsWallet(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	s := store.New(pool)
	if _, _, err := s.PutWallet(ctx, "acme", nil, false, "bench", time.Now()); err != nil {
		return err
	}
	_, _, _, err = s.Grant(ctx, "acme", 1_000_000_000_000, "bench", "", "bench")
	return err
}

// profileStore writes a CPU profile of a replica of policy on the store at
// dsn while it answers r at concurrency 50.
func (b *bench) profileStore(policy, dsn, path string, r *authv3.CheckRequest) error {
	s, err := b.startStore(policy, dsn, "--pprof")
	if err != nil {
		return err
	}
	defer s.stop()
	<-s.loaded
	done := make(chan error, 1)
	go func() { done <- saveProfile(s, *profSecs, path) }()
	for {
		select {
		case err := <-done:
			logf("CPU profile of %s written to %s", policy, path)
			return err
		default:
			if _, err := load(s, 50, 20000, func(int) *authv3.CheckRequest { return r }); err != nil {
				return err
			}
		}
	}
}
