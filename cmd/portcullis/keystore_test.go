package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
)

// replica runs `portcullis serve` on a copy of the self-service example
// (policy at pol) against dsn, with the key-management API, debug logs (the
// mirror's applied versions) and usage flushed every 200 ms.
type replica struct {
	*proc
	demo *testkit.Demo
	c    authv3.AuthorizationClient
}

func selfService(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyExample(t, "self-service", dir)
	return filepath.Join(dir, "policy.yaml")
}

func startReplica(t *testing.T, pol, dsn string, extra ...string) *replica {
	t.Helper()
	p := startServeEnv(t, []string{"PORTCULLIS_DATABASE_URL=" + dsn},
		append([]string{"--policy", pol, "--keys-api-addr", "127.0.0.1:0", "--log-level", "debug", "--usage-flush", "200ms"}, extra...)...)
	return &replica{proc: p, demo: testkit.Load(t, "self-service"), c: authv3.NewAuthorizationClient(dial(t, p.grpcAddr))}
}

// applied waits until the replica's mirror has applied version.
func (r *replica) applied(t *testing.T, version float64) {
	t.Helper()
	r.waitFor(t, func(m map[string]any) bool {
		v, _ := m["version"].(float64)
		return (m["msg"] == "key store changes applied" || m["msg"] == "key store loaded") && v >= version
	})
}

// api calls the replica's key-management API as who ("console" for the
// management token, else a demo user's token).
func (r *replica) api(t *testing.T, who, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+r.keysAPIAddr+path, rd)
	auth := r.demo.ManagementTokens[who]
	if auth == "" {
		auth = r.demo.Token(t, who, time.Now(), time.Hour, nil)
	}
	req.Header.Set("Authorization", "Bearer "+auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// check asks the replica over gRPC whether key may GET /v1/models, and
// returns the status and reason.
func (r *replica) check(t *testing.T, key string) (int, string) {
	t.Helper()
	status, why, err := r.tryCheck(key)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return status, why
}

func (r *replica) tryCheck(key string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := r.c.Check(ctx, checkReq("GET", "/v1/models", map[string]string{"authorization": "Bearer " + key}))
	if err != nil {
		return 0, "", err
	}
	if resp.GetOkResponse() != nil {
		return 200, "allowed", nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), resp.GetStatus().GetMessage(), nil
}

func (r *replica) wantCheck(t *testing.T, key string, status int, reason string) {
	t.Helper()
	if got, why := r.check(t, key); got != status || why != reason {
		t.Fatalf("%s: %d %s, want %d %s", r.grpcAddr, got, why, status, reason)
	}
}

// TestKeyStoreTwoReplicas: two real replicas on one database. A key made
// through one replica's API works on both once both report its version;
// delete, delete-all, refresh with overlap (both values, then only the
// new one), disable and expiry are refused on both; usage sums both.
func TestKeyStoreTwoReplicas(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	dsn := pg.Database(t)
	pol := selfService(t)
	a := startReplica(t, pol, dsn)
	b := startReplica(t, pol, dsn)
	// Ready once its keys are in and their load's garbage is given back.
	a.waitFor(t, msgIs("ready: health SERVING"))
	if code, body := a.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}

	both := func(v any) {
		t.Helper()
		a.applied(t, v.(float64))
		b.applied(t, v.(float64))
	}
	status, k := a.api(t, "alice", "POST", "/v1/keys", map[string]any{"label": "laptop", "tier": "admin", "tenant": "org-acme"})
	if status != 201 {
		t.Fatalf("create: %d %v", status, k)
	}
	key, id := k["key"].(string), k["id"].(string)
	both(k["version"])
	a.wantCheck(t, key, 200, "allowed")
	b.wantCheck(t, key, 200, "allowed")
	// A key bound to a tenant acts for it without a context header.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := b.c.Check(ctx, checkReq("POST", "/v1/models", map[string]string{"authorization": "Bearer " + key}))
	if err != nil || resp.GetOkResponse() == nil || !strings.Contains(fmt.Sprint(resp.GetOkResponse().GetHeaders()), "org-acme") {
		t.Fatalf("tenant-bound key: %v %v", resp, err)
	}

	// Refresh with an overlap: both values work, then without: only the new.
	_, r1 := b.api(t, "alice", "POST", "/v1/keys/"+id+"/refresh", map[string]any{"overlap": "1h"})
	both(r1["version"])
	key2 := r1["key"].(string)
	for _, rep := range []*replica{a, b} {
		rep.wantCheck(t, key, 200, "allowed")
		rep.wantCheck(t, key2, 200, "allowed")
	}
	_, r2 := a.api(t, "alice", "POST", "/v1/keys/"+id+"/refresh", nil)
	both(r2["version"])
	key3 := r2["key"].(string)
	for _, rep := range []*replica{a, b} {
		rep.wantCheck(t, key, 401, "invalid_api_key")
		rep.wantCheck(t, key2, 401, "invalid_api_key")
		rep.wantCheck(t, key3, 200, "allowed")
	}
	_, d := a.api(t, "alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": true})
	both(d["version"])
	b.wantCheck(t, key3, 401, "key_disabled")
	_, d = a.api(t, "alice", "PATCH", "/v1/keys/"+id, map[string]any{"disabled": false})
	both(d["version"])
	b.wantCheck(t, key3, 200, "allowed")

	// Expiry: the store's clock says so (no API call makes a past expiry).
	pg.Exec(t, dsn, `WITH v AS (UPDATE portcullis_version SET version = version + 1 RETURNING version)
		UPDATE portcullis_keys SET expires_at = now() - interval '1 second', version = (SELECT version FROM v) WHERE id = $1`, id)
	pg.Exec(t, dsn, "SELECT pg_notify('portcullis_keys', 'x')")
	b.waitFor(t, func(m map[string]any) bool {
		return m["msg"] == "key store changes applied" && m["version"].(float64) > d["version"].(float64)
	})
	b.wantCheck(t, key3, 401, "key_expired")

	// Usage: checks on both replicas, summed.
	_, u := a.api(t, "alice", "POST", "/v1/keys", map[string]any{"label": "counted", "tier": "service"})
	both(u["version"])
	counted := u["key"].(string)
	a.wantCheck(t, counted, 200, "allowed")
	b.wantCheck(t, counted, 200, "allowed")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	denied, err := b.c.Check(ctx2, checkReq("POST", "/v1/models", map[string]string{"authorization": "Bearer " + counted})) // tier_too_low
	if err != nil || denied.GetDeniedResponse() == nil {
		t.Fatalf("no-route check: %v %v", denied, err)
	}
	// Replica a answers with what the database holds and its own unflushed
	// counts; b's reach the database at its next flush, which it logs
	// (only when it wrote something). Ask again after each of b's flushes
	// until both are in: what is pending on b is always flushed next.
	for {
		flushes := strings.Count(b.log(), `"msg":"key usage flushed"`)
		_, usage := a.api(t, "alice", "GET", "/v1/keys/"+u["id"].(string)+"/usage", nil)
		if usage["allowed"].(float64) == 2 && usage["denied"].(float64) == 1 {
			break
		}
		if usage["allowed"].(float64) > 2 || usage["denied"].(float64) > 1 {
			t.Fatalf("usage %v: want 2 allowed (one per replica) and 1 denied (a 403 once identified)", usage)
		}
		b.waitCount(t, `"msg":"key usage flushed"`, flushes+1)
	}

	// Delete one, then delete all of alice's: refused on both.
	_, del := b.api(t, "alice", "DELETE", "/v1/keys/"+id, nil)
	both(del["version"])
	a.wantCheck(t, key3, 401, "invalid_api_key")
	b.wantCheck(t, key3, 401, "invalid_api_key")
	_, all := a.api(t, "console", "POST", "/v1/keys/revoke", map[string]any{"user": "u-alice"})
	both(all["version"])
	if all["revoked"].(float64) != 1 {
		t.Fatalf("delete all: %v", all)
	}
	a.wantCheck(t, counted, 401, "invalid_api_key")
	b.wantCheck(t, counted, 401, "invalid_api_key")

	_, metrics := b.get(t, "/metrics")
	for _, want := range []string{"portcullis_keystore_version ", "portcullis_keystore_feed_connected 1", "portcullis_keystore_lag_seconds", "portcullis_keystore_resyncs_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{key, key2, key3, counted, keys.DigestOf(key3).String()} {
		if strings.Contains(a.log()+b.log()+metrics, secret) {
			t.Errorf("a key or digest (%.8s…) appears in the logs or metrics", secret)
		}
	}
}

// TestKeyStoreLimitsAcrossReplicas: 20 creates at once, split between two
// replicas' APIs, stop exactly at the limit: per_user_limit 5 for alice's
// own keys, then key_limit 8 for the console's (3 more); every other
// answer is 409 limit_reached, and both replicas mirror exactly the keys
// made.
func TestKeyStoreLimitsAcrossReplicas(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	dsn := pg.Database(t)
	pol := selfService(t)
	editFile(t, pol, "per_user_limit: 50", "per_user_limit: 5\nkey_limit: 8")
	reps := []*replica{startReplica(t, pol, dsn), startReplica(t, pol, dsn)}
	for _, r := range reps {
		r.waitFor(t, msgIs("key store loaded"))
	}
	burst := func(who string, body map[string]any, want int) []string {
		t.Helper()
		var mu sync.Mutex
		var made []string
		var wg sync.WaitGroup
		limited, last := 0, 0.0
		for i := range 20 {
			wg.Go(func() {
				status, k := reps[i%2].api(t, who, "POST", "/v1/keys", body)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case status == 201:
					made = append(made, k["key"].(string))
					last = math.Max(last, k["version"].(float64))
				case status == 409 && k["reason"] == "limit_reached":
					limited++
				default:
					t.Errorf("%s create: %d %v", who, status, k)
				}
			})
		}
		wg.Wait()
		if len(made) != want || limited != 20-want {
			t.Fatalf("%s: %d created, %d limit_reached; want %d and %d", who, len(made), limited, want, 20-want)
		}
		for _, r := range reps {
			r.applied(t, last)
		}
		return made
	}
	made := burst("alice", map[string]any{"label": "burst", "tier": "service"}, 5)
	made = append(made, burst("console", map[string]any{"label": "burst", "tier": "service", "tenant": "org-globex"}, 3)...)
	for _, r := range reps {
		for _, k := range made {
			r.wantCheck(t, k, 200, "allowed")
		}
	}
}

// appliedSeen returns the highest key store version the replica has logged
// as applied so far: a check sent after that is decided with it.
func (r *replica) appliedSeen() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	best := -1.0
	for _, m := range r.entries {
		if m["msg"] == "key store changes applied" || m["msg"] == "key store loaded" {
			if v, _ := m["version"].(float64); v > best {
				best = v
			}
		}
	}
	return best
}

// loadKey is a key the load sends, and the version that deleted it (0:
// live).
type loadKey struct {
	key     string
	deleted float64
}

// TestKeyStoreFaultsUnderLoad: two replicas decide a steady load of live
// and deleted keys while the feed's backend is killed, PostgreSQL is
// stopped and started, notifications are lost, a replica starts with the
// database down, and a replica is killed and started again. No decision
// is wrong: a live key is always allowed (the last mirror serves while the
// database is down), and a deleted key is refused by every replica that has
// logged applying its deletion. After each fault every replica is current.
func TestKeyStoreFaultsUnderLoad(t *testing.T) {
	pg := testkit.NewPostgreSQL(t)
	dsn := pg.Database(t)
	pol := selfService(t)
	reps := []*replica{startReplica(t, pol, dsn), startReplica(t, pol, dsn)}
	console := reps[0]
	ready := map[*replica]bool{reps[0]: true, reps[1]: true}
	var mu sync.Mutex
	var keyset []*loadKey
	create := func() {
		_, k := console.api(t, "console", "POST", "/v1/keys", map[string]any{"label": "load", "tier": "service", "user": "u-alice"})
		for _, r := range reps {
			r.applied(t, k["version"].(float64))
		}
		mu.Lock()
		keyset = append(keyset, &loadKey{key: k["key"].(string)})
		mu.Unlock()
	}
	// deleteOne deletes a live key (through the API, or with notify off as
	// a lost notification would leave it) and waits for every replica.
	deleteOne := func(silent bool) {
		mu.Lock()
		var victim *loadKey
		for _, k := range keyset {
			if k.deleted == 0 {
				victim = k
				break
			}
		}
		// Being deleted: either answer is right until the deletion has a
		// version a replica has logged applying.
		victim.deleted = math.MaxFloat64
		mu.Unlock()
		var v float64
		if silent {
			pg.Exec(t, dsn, `WITH v AS (UPDATE portcullis_version SET version = version + 1 RETURNING version)
				UPDATE portcullis_keys SET revoked_at = now(), version = (SELECT version FROM v) WHERE digest = $1`, keys.DigestOf(victim.key).Bytes())
			v = -1 // known below
		} else {
			_, id := console.api(t, "console", "GET", "/v1/keys?user=u-alice", nil)
			for _, k := range id["keys"].([]any) {
				o := k.(map[string]any)
				if strings.HasPrefix(victim.key, o["start"].(string)) {
					_, d := console.api(t, "console", "DELETE", "/v1/keys/"+o["id"].(string), nil)
					v = d["version"].(float64)
				}
			}
		}
		if v == -1 {
			_, st := console.api(t, "console", "GET", "/v1/status", nil)
			_ = st
			var latest int64
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgxConnect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if err := conn.QueryRow(ctx, "SELECT version FROM portcullis_version").Scan(&latest); err != nil {
				t.Fatal(err)
			}
			v = float64(latest)
		}
		mu.Lock()
		victim.deleted = v
		var up []*replica
		for _, r := range reps {
			if ready[r] {
				up = append(up, r)
			}
		}
		mu.Unlock()
		for _, r := range up {
			r.applied(t, v)
		}
	}
	for range 12 {
		create()
	}
	deleteOne(false)

	// The load: checks on every ready replica, each decision judged.
	var checks, wrong atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				var live []*replica
				for r, ok := range ready {
					if ok {
						live = append(live, r)
					}
				}
				if len(live) == 0 {
					mu.Unlock()
					continue
				}
				r, k := live[i%len(live)], *keyset[(i/len(live))%len(keyset)]
				mu.Unlock()
				seen := r.appliedSeen()
				status, why, err := r.tryCheck(k.key)
				mu.Lock()
				up := ready[r]
				mu.Unlock()
				if err != nil && !up {
					continue // the replica was taken down meanwhile
				}
				checks.Add(1)
				switch {
				case err != nil:
					wrong.Add(1)
					t.Errorf("%s: %v", r.grpcAddr, err)
				case k.deleted == 0 && status != 200:
					wrong.Add(1)
					t.Errorf("%s refused a live key: %d %s", r.grpcAddr, status, why)
				case k.deleted != 0 && seen >= k.deleted && status == 200:
					wrong.Add(1)
					t.Errorf("%s allowed a key deleted at version %v after applying %v", r.grpcAddr, k.deleted, seen)
				}
			}
		}()
	}
	current := func(fault string) {
		t.Helper()
		deleteOne(false)
		mu.Lock()
		var up []*replica
		for _, r := range reps {
			if ready[r] {
				up = append(up, r)
			}
		}
		mu.Unlock()
		for _, r := range up {
			mu.Lock()
			ks := append([]*loadKey(nil), keyset...)
			mu.Unlock()
			for _, k := range ks {
				if status, why := r.check(t, k.key); (k.deleted == 0) != (status == 200) {
					t.Fatalf("after %s: %s answers %d %s for a key deleted at %v", fault, r.grpcAddr, status, why, k.deleted)
				}
			}
		}
	}

	// 1. The feed's backend killed.
	pg.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	current("the feed's backend was killed")
	// 2. PostgreSQL stopped, then started: the last mirror serves meanwhile.
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		r.waitFor(t, msgIs("key store unreachable: serving the last mirror of its keys; retrying"))
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		r.waitFor(t, msgIs("key store feed reconnected"))
	}
	current("a restart of PostgreSQL")
	// 3. Lost notifications: the poll catches up.
	deleteOne(true)
	current("a lost notification")
	// 4. A replica started while the database is down: not ready, then ready.
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	late := startReplica(t, pol, dsn)
	if code, _ := late.get(t, "/readyz"); code != 503 {
		t.Errorf("a replica that never loaded its keys: /readyz %d, want 503", code)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	late.waitFor(t, msgIs("ready: health SERVING"))
	if code, body := late.get(t, "/readyz"); code != 200 {
		t.Errorf("after its keys loaded: /readyz %d %s", code, body)
	}
	mu.Lock()
	reps = append(reps, late)
	ready[late] = true
	mu.Unlock()
	current("a start with the database down")
	// 5. A replica killed mid-stream and started again.
	mu.Lock()
	ready[reps[1]] = false
	mu.Unlock()
	_ = reps[1].cmd.Process.Kill()
	deleteOne(false)
	again := startReplica(t, pol, dsn)
	again.waitFor(t, msgIs("key store loaded"))
	mu.Lock()
	reps[1] = again
	ready[again] = true
	mu.Unlock()
	current("a replica restart")

	close(stop)
	wg.Wait()
	if wrong.Load() != 0 || checks.Load() < 100 {
		t.Fatalf("%d wrong decisions in %d checks", wrong.Load(), checks.Load())
	}
	t.Logf("%d checks, 0 wrong", checks.Load())
}

func pgxConnect(ctx context.Context, dsn string) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }

// TestKeyAPIBeforeTheStoreIsRead: a replica started while its database is
// down answers the key API 503 with Retry-After (never a half-migrated
// schema's error), and serves it once the database is back and read.
func TestKeyAPIBeforeTheStoreIsRead(t *testing.T) {
	pg := testkit.NewPostgreSQL(t)
	dsn := pg.Database(t)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, selfService(t), dsn)
	for _, call := range []struct{ who, method, path string }{
		{"console", "POST", "/v1/keys"}, {"alice", "GET", "/v1/keys"}, {"console", "PUT", "/v1/tenants/org-new"},
	} {
		req, _ := http.NewRequest(call.method, "http://"+r.keysAPIAddr+call.path, strings.NewReader(`{"label":"x","tier":"service","user":"u-alice"}`))
		auth := r.demo.ManagementTokens[call.who]
		if auth == "" {
			auth = r.demo.Token(t, call.who, time.Now(), time.Hour, nil)
		}
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || out["reason"] != "store_unavailable" ||
			!strings.Contains(out["error"].(string), "has not read the key store yet") {
			t.Fatalf("%s %s before the store was read: %d %v Retry-After %q", call.method, call.path, resp.StatusCode, out, resp.Header.Get("Retry-After"))
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitCount(t, `"msg":"key store loaded"`, 1)
	if status, k := r.api(t, "console", "POST", "/v1/keys", map[string]any{"label": "x", "tier": "service", "user": "u-alice"}); status != 201 {
		t.Fatalf("after the store was read: %d %v", status, k)
	}
}
