package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

// checkFull asks r whether key may call method /v1/models with ib-context
// ctx ("" for none): the status, reason, and the tenant and tier headers.
func (r *replica) checkFull(t *testing.T, method, key, ctx string) (int, string, string, string) {
	t.Helper()
	h := map[string]string{"authorization": "Bearer " + key}
	if ctx != "" {
		h["ib-context"] = ctx
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := r.c.Check(c, checkReq(method, "/v1/models", h))
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		return int(resp.GetDeniedResponse().GetStatus().GetCode()), resp.GetStatus().GetMessage(), "", ""
	}
	var tenant, tier string
	for _, hv := range ok.GetHeaders() {
		switch hv.GetHeader().GetKey() {
		case "x-tenant-id":
			tenant = hv.GetHeader().GetValue()
		case "x-auth-tier":
			tier = hv.GetHeader().GetValue()
		}
	}
	return 200, "allowed", tenant, tier
}

// TestDirectoryTwoReplicas: the directory through the API of one replica
// applies on both replicas' checks once they report the change's version
// (CONTRACT §10): a member's key acts for a store tenant; the member
// removed, it is refused on both, with or without a context header; added
// back as a member, the role caps the tier; a disabled tenant and a
// disabled user are refused and restored; a deleted tenant takes its keys.
func TestDirectoryTwoReplicas(t *testing.T) {
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	pol := selfService(t)
	a, b := startReplica(t, pol, dsn), startReplica(t, pol, dsn)
	both := func(body map[string]any) {
		t.Helper()
		v, ok := body["version"].(float64)
		if !ok {
			t.Fatalf("no version in %v", body)
		}
		a.applied(t, v)
		b.applied(t, v)
	}
	call := func(r *replica, who, method, path string, body any, want int) map[string]any {
		t.Helper()
		status, out := r.api(t, who, method, path, body)
		if status != want {
			t.Fatalf("%s %s %s: %d %v, want %d", who, method, path, status, out, want)
		}
		return out
	}
	expect := func(method, key, ctx string, status int, reason, tenant, tier string) {
		t.Helper()
		for _, r := range []*replica{a, b} {
			s, why, tn, tr := r.checkFull(t, method, key, ctx)
			if s != status || why != reason || tn != tenant || tr != tier {
				t.Fatalf("%s %s ib-context %q on %s: %d %s %q %q, want %d %s %q %q", method, key[:12], ctx, r.grpcAddr, s, why, tn, tr, status, reason, tenant, tier)
			}
		}
	}
	call(a, "console", "PUT", "/v1/tenants/org-initech", map[string]any{"aliases": []string{"initech"}}, 201)
	call(b, "console", "PUT", "/v1/tenants/org-initech/members/u-alice", nil, 201)
	k := call(a, "alice", "POST", "/v1/keys", map[string]any{"label": "initech", "tier": "admin", "tenant": "org-initech"}, 201)
	p := call(b, "alice", "POST", "/v1/keys", map[string]any{"label": "personal", "tier": "admin"}, 201)
	both(p)
	orgKey, personal := k["key"].(string), p["key"].(string)
	expect("POST", orgKey, "", 200, "allowed", "org-initech", "admin")
	expect("POST", personal, "initech", 200, "allowed", "org-initech", "admin")

	both(call(a, "console", "DELETE", "/v1/tenants/org-initech/members/u-alice", nil, 200))
	for _, ctx := range []string{"", "org-initech", "initech", "u-alice"} {
		expect("GET", orgKey, ctx, 403, "tenant_not_allowed", "", "")
	}
	expect("GET", personal, "org-initech", 403, "tenant_not_allowed", "", "")
	expect("GET", personal, "", 200, "allowed", "u-alice", "admin")

	both(call(b, "console", "PUT", "/v1/tenants/org-initech/members/u-alice", map[string]any{"role": "member"}, 201))
	expect("GET", orgKey, "", 200, "allowed", "org-initech", "service")
	expect("POST", orgKey, "", 403, "tier_too_low", "", "")

	both(call(a, "console", "PUT", "/v1/tenants/org-initech", map[string]any{"disabled": true}, 200))
	expect("GET", orgKey, "", 403, "tenant_disabled", "", "")
	expect("GET", personal, "initech", 403, "tenant_disabled", "", "")
	both(call(a, "console", "PUT", "/v1/tenants/org-initech", map[string]any{"disabled": false}, 200))

	both(call(b, "console", "PUT", "/v1/users/u-alice", map[string]any{"disabled": true}, 200))
	expect("GET", orgKey, "", 403, "user_disabled", "", "")
	expect("GET", personal, "", 403, "user_disabled", "", "")
	both(call(b, "console", "PUT", "/v1/users/u-alice", map[string]any{"disabled": false}, 200))
	expect("GET", orgKey, "", 200, "allowed", "org-initech", "service")

	both(call(a, "console", "DELETE", "/v1/tenants/org-initech", nil, 200))
	expect("GET", orgKey, "", 401, "invalid_api_key", "", "")
	expect("GET", personal, "initech", 403, "tenant_not_allowed", "", "")
}

// memberKey is a key bound to org-load and its own user, and the version
// that ended that user's membership (0: a member; MaxFloat64: being ended).
type memberKey struct {
	key, user string
	ended     float64
}

// TestDirectoryFaultsUnderLoad: two replicas decide a steady load of keys
// whose users are members of a store tenant, while memberships end (through
// the API, and silently as a lost notification leaves them), the feed's
// backend is killed, PostgreSQL restarts and a replica is killed and
// started again. No decision is wrong: a member's key is allowed (the last
// mirror serves while the database is down), and a key whose membership
// ended is refused by every replica that has logged applying that change.
func TestDirectoryFaultsUnderLoad(t *testing.T) {
	pg := testkit.NewPostgreSQL(t)
	dsn := pg.Database(t)
	pol := selfService(t)
	reps := []*replica{startReplica(t, pol, dsn), startReplica(t, pol, dsn)}
	console := reps[0]
	var mu sync.Mutex
	ready := map[*replica]bool{reps[0]: true, reps[1]: true}
	up := func() []*replica {
		mu.Lock()
		defer mu.Unlock()
		var out []*replica
		for _, r := range reps {
			if ready[r] {
				out = append(out, r)
			}
		}
		return out
	}
	if s, out := console.api(t, "console", "PUT", "/v1/tenants/org-load", nil); s != 201 {
		t.Fatalf("tenant: %d %v", s, out)
	}
	var keyset []*memberKey
	for i := range 16 {
		user := fmt.Sprintf("u-load-%02d", i)
		if s, out := console.api(t, "console", "PUT", "/v1/tenants/org-load/members/"+user, nil); s != 201 {
			t.Fatalf("member: %d %v", s, out)
		}
		s, k := console.api(t, "console", "POST", "/v1/keys", map[string]any{"label": "load", "tier": "service", "user": user, "tenant": "org-load"})
		if s != 201 {
			t.Fatalf("key: %d %v", s, k)
		}
		for _, r := range reps {
			r.applied(t, k["version"].(float64))
		}
		keyset = append(keyset, &memberKey{key: k["key"].(string), user: user})
	}
	latest := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgxConnect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v int64
		if err := conn.QueryRow(ctx, "SELECT version FROM portcullis_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return float64(v)
	}
	// end ends one member's membership and waits for every ready replica.
	end := func(silent bool) {
		mu.Lock()
		var victim *memberKey
		for _, k := range keyset {
			if k.ended == 0 {
				victim = k
				break
			}
		}
		victim.ended = 1e300 // either answer is right until a replica logs the change
		mu.Unlock()
		var v float64
		if silent {
			pg.Exec(t, dsn, `WITH v AS (UPDATE portcullis_version SET version = version + 1 RETURNING version)
				UPDATE portcullis_members SET removed = true, version = (SELECT version FROM v) WHERE tenant = 'org-load' AND user_id = $1`, victim.user)
			v = latest()
		} else {
			s, out := console.api(t, "console", "DELETE", "/v1/tenants/org-load/members/"+victim.user, nil)
			if s != 200 {
				t.Fatalf("end: %d %v", s, out)
			}
			v = out["version"].(float64)
		}
		mu.Lock()
		victim.ended = v
		mu.Unlock()
		for _, r := range up() {
			r.applied(t, v)
		}
	}
	end(false)

	var checks, wrong atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				live := up()
				if len(live) == 0 {
					continue
				}
				r := live[i%len(live)]
				mu.Lock()
				k := *keyset[(i/len(live))%len(keyset)]
				mu.Unlock()
				seen := r.appliedSeen()
				status, why, err := r.tryCheck(k.key)
				mu.Lock()
				isUp := ready[r]
				mu.Unlock()
				if err != nil && !isUp {
					continue
				}
				checks.Add(1)
				switch {
				case err != nil:
					wrong.Add(1)
					t.Errorf("%s: %v", r.grpcAddr, err)
				case k.ended == 0 && status != 200:
					wrong.Add(1)
					t.Errorf("%s refused a member's key: %d %s", r.grpcAddr, status, why)
				case k.ended != 0 && seen >= k.ended && status == 200:
					wrong.Add(1)
					t.Errorf("%s allowed a key whose membership ended at version %v after applying %v", r.grpcAddr, k.ended, seen)
				}
			}
		})
	}
	current := func(fault string) {
		t.Helper()
		end(false)
		for _, r := range up() {
			mu.Lock()
			ks := append([]*memberKey(nil), keyset...)
			mu.Unlock()
			for _, k := range ks {
				if status, why := r.check(t, k.key); (k.ended == 0) != (status == 200) || (k.ended != 0 && why != "tenant_not_allowed") {
					t.Fatalf("after %s: %s answers %d %s for %s (ended at %v)", fault, r.grpcAddr, status, why, k.user, k.ended)
				}
			}
		}
	}
	pg.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	current("the feed's backend was killed")
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range up() {
		r.waitFor(t, msgIs("key store unreachable: serving the last mirror of its keys; retrying"))
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	for _, r := range up() {
		r.waitFor(t, msgIs("key store feed reconnected"))
	}
	current("a restart of PostgreSQL")
	end(true)
	current("a lost notification")
	mu.Lock()
	ready[reps[1]] = false
	mu.Unlock()
	_ = reps[1].cmd.Process.Kill()
	end(false)
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
	if strings.Contains(a0log(reps), "panic") {
		t.Error("a replica panicked")
	}
}

func a0log(reps []*replica) string {
	var b strings.Builder
	for _, r := range reps {
		b.WriteString(r.log())
	}
	return b.String()
}
