package main

// This file holds the directory's benchmarks (go run ./bench -directory):
// membership removals and user disables to refusal on two replicas
// (notified, and with notifications lost), a replica's cold load of
// 100,000 tenants and 1,000,000 memberships beside 1,000,000 keys, its CPU
// per check with the directory against the same policy without it and a
// no-op server, and a bulk replace of 10,000 members through the API.

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

var (
	directoryBench = flag.Bool("directory", false, "instead of the table: the directory in PostgreSQL (membership and user changes to refusal, "+
		"100,000 tenants and 1,000,000 memberships beside 1,000,000 keys, bulk replace)")
	dirTenants  = flag.Int("tenants", 100_000, "tenants in -directory's database (each with an alias)")
	dirMembers  = flag.Int("memberships", 1_000_000, "memberships in -directory's database (one user each; each user has a key: -keys must be at least this)")
	bulkSize    = flag.Int("bulk", 10_000, "members in -directory's bulk replace")
	dirLoadOnly = flag.Bool("directory-load-only", false, "with -directory: only the cold loads (what a replica's start takes and leaves resident), not the changes, the bulk replace or the CPU")
	dirProfile  = flag.String("load-cpuprofile", "", "with -directory: also write a CPU profile of one replica's cold load (the first 8 s after exec) to this file")
)

// dirTargets collects the directory's targets as the measurements meet
// them, for the table at the end of the report.
var dirTargets []target

func dirTarget(what, measured string, met bool) {
	dirTargets = append(dirTargets, target{what: what, measured: measured, met: met})
}

// The directory's fixture: tenant t is dirTenant(t) (alias dirAlias(t));
// user i is dirUser(i), a member of tenant i % tenants with the policy's
// default role, holding key dirKey(i). The first four groups of
// -revocations users serve the latency runs: the keys of the first two are
// bound to their user's tenant (a membership removal refuses them), the
// others are personal (a user disable refuses them); every other key is
// personal too.
func dirTenant(t int) string { return fmt.Sprintf("org-%06d", t) }
func dirAlias(t int) string  { return fmt.Sprintf("alias-%06d", t) }
func dirUser(i int) string   { return fmt.Sprintf("u-%07d", i) }
func dirKey(i int) string    { return fmt.Sprintf("pd_%07d_%s", i, strings.Repeat("d", 24)) }

// directoryBenchmark runs every directory measurement and writes its report.
func (b *bench) directoryBenchmark(out io.Writer) error {
	if *dirMembers > *bigKeys || *dirMembers < 4**revocations {
		return fmt.Errorf("-memberships %d: want at most -keys (%d) and at least 4 × -revocations (%d)", *dirMembers, *bigKeys, 4**revocations)
	}
	logf("starting PostgreSQL (fsync and synchronous commits on)")
	pg, err := testkit.StartPostgreSQL()
	if err != nil {
		return err
	}
	defer pg.Remove()
	dsn, err := createDatabase(pg, "directory")
	if err != nil {
		return err
	}
	ex, err := b.selfService()
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(ex.policy)
	if err != nil {
		return err
	}
	noDir := filepath.Join(filepath.Dir(ex.policy), "policy-no-directory.yaml")
	off := strings.Replace(string(raw), "directory:\n  store: true", "directory:\n  store: false", 1)
	if off == string(raw) {
		return fmt.Errorf("%s: no \"directory:\\n  store: true\" to turn off", ex.policy)
	}
	if err := os.WriteFile(noDir, []byte(off), 0o644); err != nil {
		return err
	}
	copied, err := dirFixture(dsn)
	if err != nil {
		return err
	}
	header(out, command())
	fmt.Fprintf(out, "PostgreSQL 15, started by the harness with fsync and synchronous commits on. `examples/self-service/policy.yaml` "+
		"(`directory: {store: true}`, three roles); the database holds %d tenants (an alias each), %d memberships (user i a member of tenant i mod %d, "+
		"the default role) and %d keys (one per member, written with COPY in %s).\n\n",
		*dirTenants, *dirMembers, *dirTenants, *dirMembers, secs(copied))

	if err := b.dirColdLoad(out, ex.policy, dsn); err != nil {
		return err
	}
	if *dirLoadOnly {
		dirTargetTable(out)
		return nil
	}
	reps, err := b.startAPIReplicas(ex.policy, dsn, 2)
	if err != nil {
		return err
	}
	defer stopAll(reps)
	api := &apiClient{base: "http://" + reps[0].keysAPI, token: ex.token}
	if err := dirLatency(out, api, reps, dsn); err != nil {
		return err
	}
	if err := bulkReplace(out, api, reps); err != nil {
		return err
	}
	stopAll(reps)
	if err := b.dirCPU(out, ex.policy, noDir, dsn); err != nil {
		return err
	}
	dirTargetTable(out)
	return nil
}

// dirTargetTable writes the targets the measurements met or missed.
func dirTargetTable(out io.Writer) {
	fmt.Fprintf(out, "\n| target (docs/design.md §6, directory; issue 23) | measured | |\n|---|---|---|\n")
	for _, t := range dirTargets {
		verdict := "met"
		if !t.met {
			verdict = "**missed**"
		}
		fmt.Fprintf(out, "| %s | %s | %s |\n", t.what, t.measured, verdict)
	}
}

// dirFixture writes the tenants, their names, the memberships and the keys
// with COPY, all at version 1, and returns how long that took.
func dirFixture(dsn string) (time.Duration, error) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return 0, err
	}
	t0 := time.Now()
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rows := func(n int, row func(i int) []any) pgx.CopyFromSource {
		i := 0
		return pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			return row(i - 1), nil
		})
	}
	R := *revocations
	for _, c := range []struct {
		table string
		cols  []string
		n     int
		row   func(i int) []any
	}{
		{"portcullis_tenants", []string{"id", "display_name", "aliases", "disabled", "created_at", "created_by", "version"}, *dirTenants,
			func(t int) []any {
				return []any{dirTenant(t), "Organization " + fmt.Sprint(t), []string{dirAlias(t)}, false, created, "bench", int64(1)}
			}},
		{"portcullis_tenant_names", []string{"name", "tenant"}, 2 * *dirTenants, func(i int) []any {
			if i%2 == 0 {
				return []any{dirTenant(i / 2), dirTenant(i / 2)}
			}
			return []any{dirAlias(i / 2), dirTenant(i / 2)}
		}},
		{"portcullis_members", []string{"tenant", "user_id", "role", "version"}, *dirMembers, func(i int) []any {
			return []any{dirTenant(i % *dirTenants), dirUser(i), "developer", int64(1)}
		}},
		{"portcullis_keys", []string{"id", "digest", "start", "user_id", "tenant", "tier", "label", "created_at", "created_by", "version"}, *dirMembers,
			func(i int) []any {
				var tenant *string
				if i < 2*R {
					t := dirTenant(i % *dirTenants)
					tenant = &t
				}
				d := keys.Digest(sha256.Sum256([]byte(dirKey(i))))
				return []any{fmt.Sprintf("dk-%07d", i), d.Bytes(), "pd_", dirUser(i), tenant, "admin", "bench", created, "bench", int64(1)}
			}},
	} {
		logf("directory: copying %d rows into %s", c.n, c.table)
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, rows(c.n, c.row)); err != nil {
			return 0, fmt.Errorf("copying %s: %w", c.table, err)
		}
	}
	took := time.Since(t0)
	if _, err := pool.Exec(ctx, "UPDATE portcullis_version SET version = 1"); err != nil {
		return 0, err
	}
	_, err = pool.Exec(ctx, "VACUUM ANALYZE")
	return took, err
}

// dirColdLoad starts a replica -starts times and times each from exec to
// the key store loaded (keys and directory) and to the first /readyz 200.
func (b *bench) dirColdLoad(out io.Writer, policy, dsn string) error {
	var loaded, ready, cpus []time.Duration
	var rss, heap []int64
	for i := range *starts {
		s, err := b.startStore(policy, dsn)
		if err != nil {
			return err
		}
		l := <-s.loaded
		r, err := waitReady(s)
		if err != nil {
			s.stop()
			return err
		}
		loaded, ready, rss, cpus = append(loaded, l), append(ready, r), append(rss, s.memKB("VmRSS")), append(cpus, s.cpu())
		heap = append(heap, int64(s.metric("go_memstats_heap_inuse_bytes")/1024))
		s.stop()
		logf("directory: cold start %d: loaded %s, ready %s, RSS %d MB", i+1, secs(l), secs(r), rss[len(rss)-1]/1024)
	}
	slices.Sort(rss)
	slices.Sort(heap)
	fmt.Fprintf(out, "- **cold load**, %d starts of a replica, each a fresh process timed from `exec`: the key store (keys and directory) loaded "+
		"**%s** (median; min %s, max %s), first `/readyz` 200 **%s** (min %s, max %s), %s of CPU used by then; RSS after load **%d MB** "+
		"(median; max %d MB), of which the Go heap in use %d MB (what is live and the load's garbage the collector has not yet freed)\n",
		len(loaded), secs(medianDur(loaded)), secs(slices.Min(loaded)), secs(slices.Max(loaded)),
		secs(medianDur(ready)), secs(slices.Min(ready)), secs(slices.Max(ready)), secs(medianDur(cpus)), rss[len(rss)/2]/1024, rss[len(rss)-1]/1024,
		heap[len(heap)/2]/1024)
	dirTarget("cold load (exec → first /readyz 200) ≤ 5 s", secs(medianDur(ready)), medianDur(ready) <= 5*time.Second)
	if *dirProfile != "" {
		if err := b.loadProfile(policy, dsn, *dirProfile); err != nil {
			return err
		}
	}
	dirTarget("resident memory after load ≤ 300 MB", fmt.Sprintf("%d MB", rss[len(rss)/2]/1024), rss[len(rss)/2]/1024 <= 300)
	return nil
}

// dirCheck asks whether key may GET /v1/models, acting for tenant ("": no
// IB-Context header).
func dirCheck(c authv3.AuthorizationClient, key, tenant string) (bool, error) {
	resp, err := c.Check(context.Background(), dirRequest(key, tenant))
	if err != nil {
		return false, err
	}
	return resp.GetOkResponse() != nil, nil
}

func dirRequest(key, tenant string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/v1/models", "authorization": "Bearer " + key, "x-request-id": "bench"}
	if tenant != "" {
		h["ib-context"] = tenant
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Host: "api.bench", Headers: h}}}}
}

// dirLatency times membership removals and user disables from the
// change's answer to the first refused check on each replica: through the
// API, then written with NOTIFY off (the replicas' poll must find them).
func dirLatency(out io.Writer, api *apiClient, reps []*server, dsn string) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	silent := store.New(pool).WithoutNotify()
	R := *revocations
	tenantOf := func(i int) string { return dirTenant(i % *dirTenants) }
	runs := []struct {
		name    string
		first   int // the group of users
		workers int
		poll    time.Duration
		change  func(i int) error
	}{
		{"membership removal, notified (DELETE /v1/tenants/{t}/members/{u})", 0, 4, pollEvery, func(i int) error {
			_, err := api.call("DELETE", "/v1/tenants/"+tenantOf(i)+"/members/"+dirUser(i), nil)
			return err
		}},
		{"user disable, notified (PUT /v1/users/{u} disabled)", 2 * R, 4, pollEvery, func(i int) error {
			_, err := api.call("PUT", "/v1/users/"+dirUser(i), map[string]any{"disabled": true})
			return err
		}},
		{"membership removal, notifications lost (written with NOTIFY off)", R, 20, lostPollEvery, func(i int) error {
			_, err := silent.DeleteMember(ctx, tenantOf(i), dirUser(i), "bench")
			return err
		}},
		{"user disable, notifications lost (written with NOTIFY off)", 3 * R, 20, lostPollEvery, func(i int) error {
			_, err := silent.PutUser(ctx, dirUser(i), true, "bench", store.Names{})
			return err
		}},
	}
	clients := make([]authv3.AuthorizationClient, len(reps))
	for i, r := range reps {
		c, done, err := dialCheck(r)
		if err != nil {
			return err
		}
		defer done()
		clients[i] = c
	}
	fmt.Fprintln(out, "\n| change → refused on every replica | changes × replicas | at a time | polled every | p50 | p99 | max |\n|---|---|---|---|---|---|---|")
	for _, run := range runs {
		for _, c := range clients {
			for i := run.first; i < run.first+R; i++ {
				if ok, err := dirCheck(c, dirKey(i), ""); err != nil || !ok {
					return fmt.Errorf("%s: user %d's key is refused before the change (%v)", run.name, i, err)
				}
			}
		}
		logf("directory: %s, %d changes, %d at a time", run.name, R, run.workers)
		var mu sync.Mutex
		lat := make([]time.Duration, 0, R*len(clients))
		if _, err := parallel(R, run.workers, func(j int) error {
			i := run.first + j
			if err := run.change(i); err != nil {
				return err
			}
			answered := time.Now()
			var wg sync.WaitGroup
			errs := make([]error, len(clients))
			for k, c := range clients {
				wg.Go(func() {
					for {
						ok, err := dirCheck(c, dirKey(i), "")
						if err != nil {
							errs[k] = err
							return
						}
						if !ok {
							d := time.Since(answered)
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
							return
						}
						if time.Since(answered) > 30*time.Second {
							errs[k] = fmt.Errorf("user %s's key still allowed 30 s after the change", dirUser(i))
							return
						}
						time.Sleep(run.poll)
					}
				})
			}
			wg.Wait()
			return errors.Join(errs...)
		}); err != nil {
			return fmt.Errorf("%s: %w", run.name, err)
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		fmt.Fprintf(out, "| %s | %d × %d | %d | %s | **%s** | **%s** | **%s** |\n", run.name, R, len(clients), run.workers, run.poll,
			ms(pct(0.50)), ms(pct(0.99)), ms(lat[len(lat)-1]))
		limit := 20 * time.Millisecond
		if run.poll == lostPollEvery {
			limit = 1100 * time.Millisecond
		}
		dirTarget(fmt.Sprintf("%s: p99 ≤ %s", run.name, ms(limit)), ms(pct(0.99)), pct(0.99) <= limit)
	}
	return nil
}

// bulkReplace replaces a tenant's member list through the API: first
// -bulk members into an empty tenant, then, several times, the whole list
// by another of as many users (every member removed, as many added: the
// largest change a call makes), timing the API's answer and the moment
// both replicas have applied it.
func bulkReplace(out io.Writer, api *apiClient, reps []*server) error {
	const tenant = "org-bulk"
	if _, err := api.call("PUT", "/v1/tenants/"+tenant, map[string]any{"display_name": "Bulk"}); err != nil {
		return err
	}
	list := func(side string) map[string]any {
		ms := make([]map[string]any, *bulkSize)
		for i := range ms {
			ms[i] = map[string]any{"user": fmt.Sprintf("bulk-%s-%05d", side, i)}
		}
		return map[string]any{"members": ms}
	}
	lists := []map[string]any{list("a"), list("b")}
	var answers, applied []time.Duration
	var first, firstApplied time.Duration
	const swaps = 7
	for i := range swaps + 1 {
		t0 := time.Now()
		res, err := api.call("PUT", "/v1/tenants/"+tenant+"/members", lists[i%2])
		if err != nil {
			return err
		}
		took := time.Since(t0)
		v, _ := res["version"].(float64)
		for _, r := range reps {
			if err := waitApplied(r, api.token, int64(v)); err != nil {
				return err
			}
		}
		all := time.Since(t0)
		added, _ := res["added"].(float64)
		removed, _ := res["removed"].(float64)
		logf("directory: bulk replace %d: %s (added %.0f, removed %.0f), applied on both replicas after %s", i, ms(took), added, removed, ms(all))
		if i == 0 {
			first, firstApplied = took, all
			continue
		}
		if int(added) != *bulkSize || int(removed) != *bulkSize {
			return fmt.Errorf("bulk replace %d: added %.0f, removed %.0f, want %d each", i, added, removed, *bulkSize)
		}
		answers, applied = append(answers, took), append(applied, all)
	}
	fmt.Fprintf(out, "\n- **bulk replace** (PUT /v1/tenants/{t}/members, one transaction, one change): %d members into an empty tenant **%s** "+
		"(both replicas applied it after %s); the whole list swapped for %d other users (%d removed, %d added), %d times: answer **%s** median "+
		"(min %s, max %s), both replicas applied it after %s median\n",
		*bulkSize, ms(first), ms(firstApplied), *bulkSize, *bulkSize, *bulkSize, len(answers),
		ms(medianDur(answers)), ms(slices.Min(answers)), ms(slices.Max(answers)), ms(medianDur(applied)))
	dirTarget(fmt.Sprintf("bulk replace of %d members through the API ≤ 1 s (median; the whole list swapped)", *bulkSize), ms(medianDur(answers)), medianDur(answers) <= time.Second)

	// A platform's nightly sync: the same list with 1% of it changed.
	changed := list("b")
	ms0 := changed["members"].([]map[string]any)
	for i := range *bulkSize / 100 {
		ms0[i] = map[string]any{"user": fmt.Sprintf("bulk-c-%05d", i)}
	}
	var syncs []time.Duration
	for i := range 5 {
		body := changed
		if i%2 == 1 {
			body = lists[1]
		}
		t0 := time.Now()
		if _, err := api.call("PUT", "/v1/tenants/"+tenant+"/members", body); err != nil {
			return err
		}
		syncs = append(syncs, time.Since(t0))
	}
	fmt.Fprintf(out, "- **bulk replace, 1%% changed** (the same %d members but %d, as a platform's sync sends them), %d times: answer **%s** median (min %s, max %s)\n",
		*bulkSize, *bulkSize/100, len(syncs), ms(medianDur(syncs)), ms(slices.Min(syncs)), ms(slices.Max(syncs)))
	dirTarget(fmt.Sprintf("bulk replace of %d members through the API ≤ 1 s (median; 1%% of the list changed)", *bulkSize), ms(medianDur(syncs)), medianDur(syncs) <= time.Second)
	return nil
}

// dirCPU measures CPU per check at concurrency 50: the no-op, the policy
// with the directory and without it on a key-only request in the user's
// personal context, and the no-op and the directory on the same key acting
// for an organization it is a member of (IB-Context), alternating.
func (b *bench) dirCPU(out io.Writer, withDir, noDir, dsn string) error {
	user := *dirMembers / 2 // a personal key, away from the latency groups
	personal, org := dirRequest(dirKey(user), ""), dirRequest(dirKey(user), dirTenant(user%*dirTenants))
	respPersonal, err := b.captureStore(withDir, dsn, personal)
	if err != nil {
		return err
	}
	respOrg, err := b.captureStore(withDir, dsn, org)
	if err != nil {
		return err
	}
	type way struct {
		name   string
		policy string // "" for the no-op
		resp   string
		req    *authv3.CheckRequest
	}
	ways := []way{
		{"personal context: no-op", "", respPersonal, personal},
		{"personal context: portcullis, `directory: {store: true}`", withDir, "", personal},
		{"personal context: portcullis, the same policy with `store: false`", noDir, "", personal},
		{"organization (IB-Context): no-op", "", respOrg, org},
		{"organization (IB-Context): portcullis, `directory: {store: true}`", withDir, "", org},
	}
	count := 40000
	if *quick {
		count = 8000
	}
	nRounds := min(*rounds, 5)
	res := make([][]result, len(ways))
	for r := range nRounds {
		for k := range ways {
			w := ways[(k+r)%len(ways)]
			i := (k + r) % len(ways)
			var s *server
			if w.policy == "" {
				s, err = b.startNoop(w.resp)
			} else if s, err = b.startStore(w.policy, dsn); err == nil {
				<-s.loaded
			}
			if err != nil {
				return err
			}
			got, err := load(s, 50, count, func(int) *authv3.CheckRequest { return w.req })
			s.stop()
			if err != nil {
				return err
			}
			if w.policy != "" && got.allowed != count {
				return fmt.Errorf("%s: %d of %d allowed", w.name, got.allowed, count)
			}
			logf("directory: %s, round %d: %.0f req/s, %s CPU/check", w.name, r+1, got.rps, us(got.cpuPerCheck))
			res[i] = append(res[i], got)
		}
	}
	// Ratios: each round's own, then the median (drift between rounds cancels).
	ratio := func(a, b int) float64 {
		var v []float64
		for r := range nRounds {
			v = append(v, float64(res[a][r].cpuPerCheck)/float64(max(res[b][r].cpuPerCheck, 1)))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(out, "\nCPU per check, concurrency 50, %d checks a run, %d rounds, each round every way back to back in a rotating order, "+
		"each a fresh process (the replicas after loading the whole store); medians, ratios the median of each round's own:\n\n", count, nRounds)
	fmt.Fprintln(out, "| way | req/s | p50 | p99 | CPU/check | ÷ no-op (same request) | ÷ without the directory |\n|---|---|---|---|---|---|---|")
	for i, w := range ways {
		m := median(res[i])
		noop, without := "", ""
		switch i {
		case 1, 2:
			noop = fmt.Sprintf("%.2f×", ratio(i, 0))
		case 4:
			noop = fmt.Sprintf("%.2f×", ratio(i, 3))
		}
		if i == 1 {
			without = fmt.Sprintf("**%.2f×**", ratio(1, 2))
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %s | %s |\n", w.name, m.rps, us(m.p50), us(m.p99), us(m.cpuPerCheck), noop, without)
	}
	v := ratio(1, 2)
	dirTarget("CPU per check with the directory ≤ 1.05× the same policy without it (personal context, conc 50)", fmt.Sprintf("%.2f×", v), v <= 1.05)
	return nil
}

// captureStore asks a replica of policy on the store at dsn for its answer
// to r and writes it, encoded, for the no-op to answer with.
func (b *bench) captureStore(policy, dsn string, r *authv3.CheckRequest) (string, error) {
	s, err := b.startStore(policy, dsn)
	if err != nil {
		return "", err
	}
	defer s.stop()
	<-s.loaded
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), r)
	if err != nil {
		return "", err
	}
	if resp.GetOkResponse() == nil {
		return "", fmt.Errorf("%s refuses the benchmark's request: %v", policy, resp.GetDeniedResponse().GetBody())
	}
	enc, err := proto.Marshal(resp)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(b.dir, "response-*.pb")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(enc)
	return f.Name(), err
}

// loadProfile writes a CPU profile of a replica's first 8 seconds, its
// cold load of the store, to path.
func (b *bench) loadProfile(policy, dsn, path string) error {
	s, err := b.startStore(policy, dsn, "--pprof")
	if err != nil {
		return err
	}
	defer s.stop()
	if err := saveProfile(s, 8, path); err != nil {
		return err
	}
	logf("directory: CPU profile of a cold load written to %s", path)
	return nil
}
