package envoy_test

// This file holds the failure modes, through the real Envoy with the
// shipped configurations: Portcullis stopped, Portcullis slower than the
// filter's timeout, Portcullis restarted and its policy reloaded under load,
// and a replica draining; each counted at the upstream.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

// relay is a TCP relay on loopback in front of a server, which can hold
// what the server sends back for a while: a server slower than a timeout,
// without changing the server. Each chunk is held for the delay in force
// when it arrived, so a later chunk never waits for more than its own.
type relay struct {
	ln      net.Listener
	target  string
	delay   atomic.Int64 // nanoseconds each chunk from the server is held
	pending atomic.Int64 // chunks held now
	wg      sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// chunk is what the server sent, and when it may be passed on.
type chunk struct {
	due  time.Time
	data []byte
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		held := make(chan chunk, 1024)
		r.wg.Add(3)
		go func() { // client to server, as it comes
			defer r.wg.Done()
			_, _ = io.Copy(s, c)
			s.Close()
		}()
		go func() { // server to relay, stamped
			defer r.wg.Done()
			defer close(held)
			for {
				buf := make([]byte, 32<<10)
				n, err := s.Read(buf)
				if n > 0 {
					r.pending.Add(1)
					held <- chunk{time.Now().Add(time.Duration(r.delay.Load())), buf[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // relay to client, each chunk when it is due
			defer r.wg.Done()
			defer c.Close()
			broken := false
			for ch := range held {
				time.Sleep(time.Until(ch.due)) // the fault injected: a slow server
				if !broken {
					_, err := c.Write(ch.data)
					broken = err != nil
				}
				r.pending.Add(-1)
			}
		}()
	}
}

// waitIdle waits until the relay holds nothing.
func (r *relay) waitIdle(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); r.pending.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the relay never passed on what it held")
		}
		time.Sleep(5 * time.Millisecond) // polling the relay's state
	}
}

// clusterOf is the cluster a shipped front proxy's ext_authz filter calls.
func clusterOf(s shipped) string {
	if s.transport == "grpc" {
		return "portcullis"
	}
	return "portcullis_http"
}

// assertAllowed sends a request Portcullis allows and fails the test unless
// it reaches the upstream: the parts work.
func (st *stack) assertAllowed(t *testing.T, key string) {
	t.Helper()
	before := st.up.count()
	a := send(t, st.addr, "GET", "/images/0", "", "x-api-key", key, "authorization", "None")
	if a.status != 200 || st.up.count() != before+1 {
		t.Fatalf("an allowed request: %d, %d reached the upstream: %s", a.status, st.up.count()-before, a.body)
	}
}

// assertDenied sends n requests an up Portcullis would allow and reports
// each one not answered with status, and every one that reached the
// upstream.
func (st *stack) assertDenied(t *testing.T, r reporter, key string, n, status int) {
	t.Helper()
	before := st.up.count()
	for i := range n {
		a := send(t, st.addr, "GET", fmt.Sprintf("/images/%d", i), "", "x-api-key", key, "authorization", "None")
		if a.status != status {
			r.Errorf("request %d: status %d, want %d: %s", i, a.status, status, a.body)
		}
	}
	if got := st.up.count() - before; got != 0 {
		r.Errorf("%d of %d requests reached the upstream without an allow", got, n)
	}
}

// TestEnvoyFailsClosed: with Portcullis stopped, and with Portcullis slower
// than the filter's timeout, every request is denied with the configured
// status (503) and none reaches the upstream; with Portcullis back (or fast
// again) the same request is allowed.
func TestEnvoyFailsClosed(t *testing.T) {
	envoyBinary(t)
	d := testkit.Load(t, "three-tiers")
	key := d.Key(t, "acme")
	for _, s := range frontProxies {
		t.Run(s.file+"/stopped", func(t *testing.T) {
			p := serveExample(t, d.Policy())
			st := startStack(t, s, shippedDoc(t, s.file), p, newUpstream(t))
			st.assertAllowed(t, key)
			p.stop(t)
			st.assertDenied(t, t, key, 10, 503)
			// Once health checking has taken the replica out, still 503.
			st.waitHealth(t, clusterOf(s), func(flags string) bool { return strings.Contains(flags, "failed_active_hc") })
			st.assertDenied(t, t, key, 10, 503)
			for _, l := range st.envoy.accessLog() {
				var e accessEntry
				if json.Unmarshal([]byte(l), &e) == nil && e.Status == 503 && !strings.Contains(e.Flags, "UAEX") {
					t.Errorf("a 503 without Envoy's UAEX flag (denied by the authorization filter): %s", l)
				}
			}
		})
		t.Run(s.file+"/slower than the timeout", func(t *testing.T) {
			p := serveExample(t, d.Policy())
			target := p.grpcAddr
			if s.transport == "http" {
				target = p.httpAddr
			}
			rl := newRelay(t, target)
			up := newUpstream(t)
			cfg := rewriteAddresses(t, shippedDoc(t, s.file), map[string][]endpoint{
				// Checks go through the relay; health checks go to Portcullis
				// itself, which stays healthy: only the answers are slow.
				"portcullis":      {{Addr: rl.addr(), HealthCheck: p.grpcAddr}},
				"portcullis_http": {{Addr: rl.addr(), HealthCheck: p.adminAddr}},
				"api":             tcp(up.addr()),
			})
			e := startEnvoy(t, cfg)
			st := &stack{envoy: e, addr: e.listener(t, "ingress"), up: up, pc: p, transport: s.transport}
			st.assertAllowed(t, key)
			timeout := extAuthzTimeout(t, shippedDoc(t, s.file))
			rl.delay.Store(int64(2 * timeout))
			timeouts := e.stat(t, "cluster."+clusterOf(s)+".upstream_rq_timeout")
			st.assertDenied(t, t, key, 3, 503)
			if got := e.stat(t, "cluster."+clusterOf(s)+".upstream_rq_timeout") - timeouts; got != 3 {
				t.Errorf("%d checks timed out, want 3 (the denies must come from the filter's timeout)", got)
			}
			rl.delay.Store(0)
			rl.waitIdle(t)
			st.assertAllowed(t, key)
		})
	}
}

// extAuthzTimeout is the timeout of the one ext_authz filter of d.
func extAuthzTimeout(t *testing.T, d doc) time.Duration {
	t.Helper()
	cfgs := extAuthzConfigs(d)
	if len(cfgs) != 1 {
		t.Fatalf("%d ext_authz filters", len(cfgs))
	}
	v := path(cfgs[0], "grpc_service", "timeout")
	if v == nil {
		v = path(cfgs[0], "http_service", "server_uri", "timeout")
	}
	dur, err := time.ParseDuration(fmt.Sprint(v))
	if err != nil || dur <= 0 {
		t.Fatalf("ext_authz timeout %v: %v", v, err)
	}
	return dur
}

// waitHealth waits until every host of cluster has health flags ok says
// are what the test waits for (Envoy's /clusters).
func (st *stack) waitHealth(t *testing.T, cluster string, ok func(flags string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hosts := st.envoy.hostHealth(t, cluster)
		done := len(hosts) > 0
		for _, f := range hosts {
			done = done && ok(f)
		}
		if done {
			return
		}
		st.envoy.pollWait(t, deadline)
	}
}

// hostIs waits until the host at address addr of cluster has flags ok
// accepts.
func (st *stack) hostIs(t *testing.T, cluster, addr string, ok func(flags string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f, found := st.envoy.hostHealth(t, cluster)[addr]; found && ok(f) {
			return
		}
		st.envoy.pollWait(t, deadline)
	}
}

func healthy(f string) bool  { return f == "healthy" }
func hcFailed(f string) bool { return strings.Contains(f, "failed_active_hc") }

func isDecision(m map[string]any) bool { return m["msg"] == "decision" }

// waitDecisions waits until p has logged more decisions than it had.
func waitDecisions(t *testing.T, p *portcullis, more int) {
	t.Helper()
	p.waitCount(t, isDecision, p.count(isDecision)+more)
}

// TestEnvoyRollingRestartAndReload: two replicas behind envoy.yaml's
// cluster, under steady load (a read a policy change will forbid, and an
// admin write it keeps): each replica in turn is stopped (SIGTERM: it
// answers NOT_SERVING and drains) and started again, then the policy both
// read is replaced. Health checking takes the stopped replica out and
// brings it back; no check fails (zero 5xx: the retry on another replica
// covers the checks a leaving replica refuses); every request that reached
// the upstream carries the id of an allow a live Portcullis logged; after
// the reload the forbidden read is 403 from both.
func TestEnvoyRollingRestartAndReload(t *testing.T) {
	envoyBinary(t)
	d := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "keys.yaml", "customers-jwks.json", "staff-jwks.json"} {
		b, err := os.ReadFile(filepath.Join(d.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "policy.yaml" {
			b = []byte(strings.Replace(string(b), "upstream_headers:\n", "upstream_headers:\n  decision_id: x-decision-id\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy := filepath.Join(dir, "policy.yaml")
	socks := []string{filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")}
	var mu sync.Mutex
	var all []*portcullis // every process that ran, for their decision logs
	start := func(i int) *portcullis {
		p := startPortcullis(t, "--policy", policy, "--grpc-addr", "unix://"+socks[i], "--log-level", "debug")
		mu.Lock()
		all = append(all, p)
		mu.Unlock()
		return p
	}
	replicas := []*portcullis{start(0), start(1)}
	up := newUpstream(t)
	e := startEnvoy(t, rewriteAddresses(t, shippedDoc(t, "envoy.yaml"), map[string][]endpoint{
		"portcullis": unixSockets(socks...), "api": tcp(up.addr())}))
	st := &stack{envoy: e, addr: e.listener(t, "ingress"), up: up, transport: "grpc"}

	key := d.Key(t, "acme")
	alice := d.Token(t, "alice-access", time.Now(), time.Hour, nil)
	type result struct {
		read   bool
		status int
	}
	var results []result
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				read := (i+w)%2 == 0
				var a answer
				if read {
					a = send(t, st.addr, "GET", "/images/1", "", "x-api-key", key, "authorization", "None")
				} else {
					a = send(t, st.addr, "PUT", "/images/1", "new", "x-api-key", key, "authorization", "Bearer "+alice)
				}
				mu.Lock()
				results = append(results, result{read, a.status})
				mu.Unlock()
			}
		}()
	}
	for _, p := range replicas {
		waitDecisions(t, p, 20)
	}
	for i := range replicas {
		replicas[i].stop(t)
		// Health checking takes it out; the other replica decides alone.
		st.hostIs(t, "portcullis", socks[i], hcFailed)
		waitDecisions(t, replicas[1-i], 20)
		replicas[i] = start(i)
		st.hostIs(t, "portcullis", socks[i], healthy)
		waitDecisions(t, replicas[i], 20) // back in the rotation
	}

	// The policy both replicas read is replaced (as a ConfigMap update
	// does): reads become admin-only.
	b, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(b), "{ prefix: /images, methods: [GET, HEAD], tier: service }", "{ prefix: /images, methods: [GET, HEAD], tier: admin }", 1)
	if v2 == string(b) {
		t.Fatal("the policy edit did not apply")
	}
	if err := os.WriteFile(policy+".tmp", []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(policy+".tmp", policy); err != nil {
		t.Fatal(err)
	}
	for _, p := range replicas {
		p.waitLog(t, msgIs("policy reloaded", "generation", 2))
		waitDecisions(t, p, 20)
	}
	stop.Store(true)
	wg.Wait()
	for range 4 { // both replicas serve generation 2 now
		if a := send(t, st.addr, "GET", "/images/1", "", "x-api-key", key, "authorization", "None"); a.status != 403 {
			t.Errorf("a key-only read after both reloaded: %d, want 403", a.status)
		}
	}

	counts := map[int]int{}
	for _, r := range results {
		counts[r.status]++
		if r.status != 200 && !(r.read && r.status == 403) {
			t.Errorf("a %s answered %d: only 200, and 403 for a read after the reload, are expected", map[bool]string{true: "read", false: "write"}[r.read], r.status)
		}
	}
	t.Logf("%d requests under load: %v", len(results), counts)
	if counts[503] > 0 {
		for _, l := range e.accessLog() {
			if strings.Contains(l, `"status":503`) {
				t.Log(l)
			}
		}
		_, stats := e.get(t, "/stats?filter=cluster.portcullis")
		t.Log(stats)
	}
	allowed := map[string]bool{}
	for _, p := range all {
		for _, m := range p.lines() {
			if m["msg"] == "decision" && m["allow"] == true {
				allowed[fmt.Sprint(m["request_id"])] = true
			}
		}
	}
	got := up.received()
	if len(got) != counts[200] {
		t.Errorf("the upstream received %d requests, the client saw %d allowed", len(got), counts[200])
	}
	for _, r := range got {
		id := r.Header["x-decision-id"]
		if id == "" || id != r.Header["x-request-id"] || !allowed[id] {
			t.Errorf("the upstream received %s %s with decision id %q (request id %q): no live Portcullis allowed it", r.Method, r.URI, id, r.Header["x-request-id"])
		}
	}
}
