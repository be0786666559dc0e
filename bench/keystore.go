package main

// This file holds the key store's benchmarks (go run ./bench -keystore): the
// key-management API's creates and deletes per second, revocation latency
// on two replicas (notified, and with notifications lost), and a replica
// mirroring 1,000,000 keys from PostgreSQL: its cold load, its memory, and
// its CPU per check beside the same keys from a file and a no-op server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

var (
	keyStore    = flag.Bool("keystore", false, "instead of the table: the PostgreSQL key store's benchmarks")
	revocations = flag.Int("revocations", 1000, "revocations timed in each latency run")
	apiConc     = flag.Int("api-concurrency", 16, "concurrent callers of the key-management API in the throughput run")
)

const (
	// pollEvery is how often a waiting revocation asks each replica again:
	// the resolution of the latency figures.
	pollEvery     = 2 * time.Millisecond
	lostPollEvery = 10 * time.Millisecond
)

// storePolicy is the load harness's policy with its keys in the key store.
var storePolicy = strings.Replace(policyYAML, "keys_file: KEYS",
	"keys_store:\n  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }", 1)

// keyStoreBench runs every key-store measurement and writes its report.
func (b *bench) keyStoreBench(out io.Writer) error {
	logf("starting PostgreSQL (fsync and synchronous commits on)")
	pg, err := testkit.StartPostgreSQL()
	if err != nil {
		return err
	}
	defer pg.Remove()
	header(out, command())
	fmt.Fprint(out, "PostgreSQL 15, started by the harness with fsync and synchronous commits on, as in production.\n\n")

	dsn, err := createDatabase(pg, "selfservice")
	if err != nil {
		return err
	}
	ex, err := b.selfService()
	if err != nil {
		return err
	}
	reps, err := b.startAPIReplicas(ex.policy, dsn, 2)
	if err != nil {
		return err
	}
	defer stopAll(reps)
	api := &apiClient{base: "http://" + reps[0].keysAPI, token: ex.token}
	if err := b.apiThroughput(out, api, reps); err != nil {
		return err
	}
	if err := b.revocationLatency(out, api, reps, dsn); err != nil {
		return err
	}
	return b.millionKeys(out, pg)
}

// example is a copy of examples/self-service with its console token.
type example struct {
	policy, token string
}

func (b *bench) selfService() (example, error) {
	dir := filepath.Join(b.dir, "self-service")
	if err := os.CopyFS(dir, os.DirFS("examples/self-service")); err != nil {
		return example{}, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "demo-credentials.json"))
	if err != nil {
		return example{}, err
	}
	var demo struct {
		ManagementTokens map[string]string `json:"management_tokens"`
	}
	if err := json.Unmarshal(raw, &demo); err != nil {
		return example{}, err
	}
	return example{policy: filepath.Join(dir, "policy.yaml"), token: demo.ManagementTokens["console"]}, nil
}

func createDatabase(pg *testkit.PostgreSQL, name string) (string, error) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return pg.DSN(name), nil
}

// startStore starts a replica on the key store at dsn.
func (b *bench) startStore(policy, dsn string, extra ...string) (*server, error) {
	cmd := exec.Command(b.portcullis, append([]string{"serve", "--policy", policy,
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), "PORTCULLIS_DATABASE_URL="+dsn)
	return launch(cmd)
}

// startAPIReplicas starts n replicas on the key store at dsn, each with
// the key-management API, and waits until each has loaded the store. On
// an error it stops those it started; else the caller stops them.
func (b *bench) startAPIReplicas(policy, dsn string, n int) ([]*server, error) {
	var reps []*server
	for range n {
		s, err := b.startStore(policy, dsn, "--keys-api-addr", "127.0.0.1:0")
		if err != nil {
			stopAll(reps)
			return nil, err
		}
		<-s.loaded
		reps = append(reps, s)
	}
	return reps, nil
}

// stopAll stops every server of reps.
func stopAll(reps []*server) {
	for _, s := range reps {
		s.stop()
	}
}

// apiClient calls the key-management API with the console's token.
type apiClient struct {
	base, token string
}

func (a *apiClient) call(method, path string, body any) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out, nil
}

// created is a key the API made.
type created struct {
	id, key string
	version int64
}

func (a *apiClient) create() (created, error) {
	k, err := a.call("POST", "/v1/keys", map[string]any{"label": "bench", "tier": "service", "tenant": "org-acme"})
	if err != nil {
		return created{}, err
	}
	v, _ := k["version"].(float64)
	return created{id: k["id"].(string), key: k["key"].(string), version: int64(v)}, nil
}

func (a *apiClient) remove(id string) (int64, error) {
	d, err := a.call("DELETE", "/v1/keys/"+id, nil)
	if err != nil {
		return 0, err
	}
	v, _ := d["version"].(float64)
	return int64(v), nil
}

// parallel runs fn(i) for i in [0, n) on conc goroutines and returns the
// wall time and the first error.
func parallel(n, conc int, fn func(i int) error) (time.Duration, error) {
	var mu sync.Mutex
	next, firstErr := 0, error(nil)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), firstErr
}

// apiThroughput creates keys and deletes them through the API with
// *apiConc callers, then waits until both replicas have applied the last
// change and refuse every deleted key.
func (b *bench) apiThroughput(out io.Writer, api *apiClient, reps []*server) error {
	n := 2 * *revocations
	made := make([]created, n)
	took, err := parallel(n, *apiConc, func(i int) (err error) {
		made[i], err = api.create()
		return err
	})
	if err != nil {
		return err
	}
	createRate := float64(n) / took.Seconds()
	logf("API: %d creates in %s", n, took)
	var last int64
	var mu sync.Mutex
	took, err = parallel(n, *apiConc, func(i int) error {
		v, err := api.remove(made[i].id)
		mu.Lock()
		last = max(last, v)
		mu.Unlock()
		return err
	})
	if err != nil {
		return err
	}
	deleteRate := float64(n) / took.Seconds()
	logf("API: %d deletes in %s", n, took)
	for _, r := range reps {
		if err := waitApplied(r, api.token, last); err != nil {
			return err
		}
		c, done, err := dialCheck(r)
		if err != nil {
			return err
		}
		for _, k := range made {
			if allowed, err := storeCheck(c, k.key); err != nil || allowed {
				done()
				return fmt.Errorf("a deleted key is still allowed on %s (%v)", r.addr, err)
			}
		}
		done()
	}
	fmt.Fprintf(out, "- key-management API, %d callers, %d keys: **%.0f creates/s**, **%.0f deletes/s** (each one transaction, version taken, change logged, NOTIFY)\n",
		*apiConc, n, createRate, deleteRate)
	return nil
}

// waitApplied polls a replica's /v1/status until it has applied version v.
func waitApplied(r *server, token string, v int64) error {
	a := &apiClient{base: "http://" + r.keysAPI, token: token}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := a.call("GET", "/v1/status", nil)
		if err != nil {
			return err
		}
		if got, _ := st["version"].(float64); int64(got) >= v {
			return nil
		}
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("%s did not apply version %d in 30 s", r.keysAPI, v)
}

func dialCheck(r *server) (authv3.AuthorizationClient, func(), error) {
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return authv3.NewAuthorizationClient(conn), func() { conn.Close() }, nil
}

// storeCheck asks whether key may GET /v1/models under the self-service
// example's policy.
func storeCheck(c authv3.AuthorizationClient, key string) (bool, error) {
	resp, err := c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Host: "api.bench",
			Headers: map[string]string{":method": "GET", ":path": "/v1/models", "authorization": "Bearer " + key}}}}})
	if err != nil {
		return false, err
	}
	return resp.GetOkResponse() != nil, nil
}

// revocationLatency times, for each of *revocations keys and each replica,
// the interval from the deletion's answer to the first refused check:
// through the API (notified), then with deletions written without NOTIFY
// (the replicas' poll of the change log must find them).
func (b *bench) revocationLatency(out io.Writer, api *apiClient, reps []*server, dsn string) error {
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	silent := store.New(pool).WithoutNotify()
	runs := []struct {
		name    string
		workers int
		poll    time.Duration
		revoke  func(k created) error
	}{
		{"notified (DELETE /v1/keys/{id})", 4, pollEvery, func(k created) error { _, err := api.remove(k.id); return err }},
		{"notifications lost (deleted with NOTIFY off)", 20, lostPollEvery, func(k created) error {
			_, err := silent.Delete(context.Background(), k.id, "bench", func(store.Key) bool { return true })
			return err
		}},
	}
	for _, run := range runs {
		made := make([]created, *revocations)
		if _, err := parallel(len(made), *apiConc, func(i int) (err error) {
			made[i], err = api.create()
			return err
		}); err != nil {
			return err
		}
		var last int64
		for _, k := range made {
			last = max(last, k.version)
		}
		clients := make([]authv3.AuthorizationClient, len(reps))
		for i, r := range reps {
			if err := waitApplied(r, api.token, last); err != nil {
				return err
			}
			c, done, err := dialCheck(r)
			if err != nil {
				return err
			}
			defer done()
			clients[i] = c
			for _, k := range made {
				if ok, err := storeCheck(c, k.key); err != nil || !ok {
					return fmt.Errorf("a new key is refused on %s (%v)", r.addr, err)
				}
			}
		}
		lat := make([]time.Duration, 0, len(made)*len(reps))
		var mu sync.Mutex
		logf("revocation latency, %s: %d revocations, %d at a time", run.name, len(made), run.workers)
		if _, err := parallel(len(made), run.workers, func(i int) error {
			if err := run.revoke(made[i]); err != nil {
				return err
			}
			answered := time.Now()
			var wg sync.WaitGroup
			errs := make([]error, len(clients))
			for j, c := range clients {
				wg.Go(func() {
					for {
						ok, err := storeCheck(c, made[i].key)
						if err != nil {
							errs[j] = err
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
							errs[j] = fmt.Errorf("key %s still allowed 30 s after its deletion", made[i].id)
							return
						}
						time.Sleep(run.poll)
					}
				})
			}
			wg.Wait()
			return errors.Join(errs...)
		}); err != nil {
			return err
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		fmt.Fprintf(out, "- revocation latency, %s, %d revocations × 2 replicas, %d at a time, polled every %s: p50 **%s**, p99 **%s**, max **%s**\n",
			run.name, len(made), run.workers, run.poll, ms(pct(0.50)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// millionKeys writes *bigKeys keys (the big keys file's, same ids and
// digests) into a fresh database with COPY, times a replica's cold load of
// them and its memory, then measures CPU per check against the no-op
// server and the same keys from the file, in alternating rounds.
func (b *bench) millionKeys(out io.Writer, pg *testkit.PostgreSQL) error {
	dsn, err := createDatabase(pg, "million")
	if err != nil {
		return err
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	logf("copying %d keys into PostgreSQL", *bigKeys)
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	row := func(id, tenant string, d keys.Digest) []any {
		return []any{id, d.Bytes(), "", tenant, "admin", "bench", created, "bench", int64(1)}
	}
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"portcullis_keys"},
		[]string{"id", "digest", "start", "tenant", "tier", "label", "created_at", "created_by", "version"},
		pgx.CopyFromFunc(func() func() ([]any, error) {
			i := 0
			return func() ([]any, error) {
				defer func() { i++ }()
				switch {
				case i == 0:
					return row("bench", "acme", keys.DigestOf(b.key)), nil
				case i < *bigKeys:
					id, tenant, d := bigKey(i)
					return row(id, tenant, d), nil
				}
				return nil, nil
			}
		}()))
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "UPDATE portcullis_version SET version = 1"); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE portcullis_keys"); err != nil {
		return err
	}
	pol := filepath.Join(b.dir, "store-policy.yaml")
	if err := os.WriteFile(pol, []byte(storePolicy), 0o644); err != nil {
		return err
	}
	var loads []time.Duration
	var rss []int64
	for range *rounds {
		s, err := b.startStore(pol, dsn)
		if err != nil {
			return err
		}
		loads = append(loads, <-s.loaded)
		rss = append(rss, s.memKB("VmRSS"))
		s.stop()
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i] < loads[j] })
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	fmt.Fprintf(out, "- %d keys in PostgreSQL: cold start to mirror loaded **%.2f s** (median of %d; min %.2f s, max %.2f s), RSS **%d MB** after load\n",
		n, loads[len(loads)/2].Seconds(), len(loads), loads[0].Seconds(), loads[len(loads)-1].Seconds(), rss[len(rss)/2]/1024)

	// CPU per check: no-op, keys file, key store, alternating.
	keyOnly := checkReq("GET", map[string]string{"x-api-key": b.key, "authorization": "None"})
	req := func(int) *authv3.CheckRequest { return keyOnly }
	count := 40000
	if *quick {
		count = 8000
	}
	resp, err := b.capture(b.bigPolicy, keyOnly)
	if err != nil {
		return err
	}
	names := []string{"no-op", "keys file", "key store"}
	res := make([][]result, len(names))
	for r := range *rounds {
		for k := range names {
			which := (k + r) % len(names)
			var s *server
			switch which {
			case 0:
				s, err = b.startNoop(resp)
			case 1:
				s, err = b.start(b.bigPolicy)
			case 2:
				if s, err = b.startStore(pol, dsn); err == nil {
					<-s.loaded
				}
			}
			if err != nil {
				return err
			}
			got, err := load(s, 50, count, req)
			s.stop()
			if err != nil {
				return err
			}
			if which > 0 && got.allowed != count {
				return fmt.Errorf("%s: %d of %d allowed", names[which], got.allowed, count)
			}
			logf("%d keys, %s, round %d: %.0f req/s, %s CPU/check", *bigKeys, names[which], r+1, got.rps, us(got.cpuPerCheck))
			res[which] = append(res[which], got)
		}
	}
	fmt.Fprintf(out, "\n| %d keys, API key only, conc 50 | req/s | p50 | p99 | CPU/check | CPU/check ÷ no-op |\n|---|---|---|---|---|---|\n", *bigKeys)
	base := median(res[0])
	for k, name := range names {
		m := median(res[k])
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %.2f× |\n", name, m.rps, us(m.p50), us(m.p99), us(m.cpuPerCheck),
			float64(m.cpuPerCheck)/float64(max(base.cpuPerCheck, 1)))
	}
	return nil
}
