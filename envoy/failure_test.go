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
	"net/http"
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

// rig is replicas of portcullis serve on unix sockets behind envoy.yaml's
// cluster (the policy a copy of three-tiers' that sends the decision id
// upstream), an upstream, and a steady load of reads a policy change will
// forbid and admin writes it keeps.
type rig struct {
	policy   string
	socks    []string
	mu       sync.Mutex
	all      []*portcullis // every process that ran, for their decision logs
	replicas []*portcullis
	up       *upstream
	st       *stack
	results  []loadResult
	stop     atomic.Bool
	wg       sync.WaitGroup
}

// loadResult is one request of the load.
type loadResult struct {
	read   bool
	status int // 0: the request failed
}

func newRig(t *testing.T, replicas int) *rig {
	t.Helper()
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
	r := &rig{policy: filepath.Join(dir, "policy.yaml")}
	for i := range replicas {
		r.socks = append(r.socks, filepath.Join(dir, fmt.Sprintf("replica-%d.sock", i)))
	}
	for i := range replicas {
		r.replicas = append(r.replicas, r.start(t, i))
	}
	r.up = newUpstream(t)
	e := startEnvoy(t, rewriteAddresses(t, shippedDoc(t, "envoy.yaml"), map[string][]endpoint{
		"portcullis": unixSockets(r.socks...), "api": tcp(r.up.addr())}))
	r.st = &stack{envoy: e, addr: e.listener(t, "ingress"), up: r.up, transport: "grpc"}
	key := d.Key(t, "acme")
	alice := d.Token(t, "alice-access", time.Now(), time.Hour, nil)
	for w := range 3 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := 0; !r.stop.Load(); i++ {
				read := (i+w)%2 == 0
				var status int
				var err error
				if read {
					status, err = trySend(r.st.addr, "GET", "/images/1", "", "x-api-key", key, "authorization", "None")
				} else {
					status, err = trySend(r.st.addr, "PUT", "/images/1", "new", "x-api-key", key, "authorization", "Bearer "+alice)
				}
				if err != nil {
					t.Errorf("a request under load failed: %v", err)
				}
				r.mu.Lock()
				r.results = append(r.results, loadResult{read, status})
				r.mu.Unlock()
			}
		}()
	}
	t.Cleanup(r.finish)
	return r
}

// trySend is send for a load goroutine: an error is returned, not fatal.
func trySend(addr, method, target, body string, headers ...string) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+target, rd)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// start starts replica i on its socket.
func (r *rig) start(t *testing.T, i int) *portcullis {
	t.Helper()
	p := startPortcullis(t, "--policy", r.policy, "--grpc-addr", "unix://"+r.socks[i], "--log-level", "debug")
	r.mu.Lock()
	r.all = append(r.all, p)
	r.mu.Unlock()
	return p
}

// restart stops replica i (SIGTERM: NOT_SERVING, drain, exit), waits until
// health checking has taken it out and then while, until the other
// replicas have decided more, starts it again and waits until it is back
// in the rotation and deciding.
func (r *rig) restart(t *testing.T, i int, meanwhile func()) {
	t.Helper()
	r.replicas[i].stop(t)
	r.st.hostIs(t, "portcullis", r.socks[i], hcFailed)
	meanwhile()
	r.replicas[i] = r.start(t, i)
	r.st.hostIs(t, "portcullis", r.socks[i], healthy)
	waitDecisions(t, r.replicas[i], 20)
}

// finish stops the load.
func (r *rig) finish() {
	r.stop.Store(true)
	r.wg.Wait()
}

// check stops the load and checks what came of it: every status is one
// ok accepts; the upstream received exactly the requests the client saw
// allowed, each carrying, as x-decision-id and x-request-id, the id of an
// allow a live Portcullis logged. It returns the statuses counted.
func (r *rig) check(t *testing.T, ok func(loadResult) bool) map[int]int {
	t.Helper()
	r.finish()
	counts := map[int]int{}
	for _, res := range r.results {
		counts[res.status]++
		if !ok(res) {
			t.Errorf("a %s answered %d", map[bool]string{true: "read", false: "write"}[res.read], res.status)
		}
	}
	t.Logf("%d requests under load: %v", len(r.results), counts)
	allowed := map[string]bool{}
	for _, p := range r.all {
		for _, m := range p.lines() {
			if m["msg"] == "decision" && m["allow"] == true {
				allowed[fmt.Sprint(m["request_id"])] = true
			}
		}
	}
	got := r.up.received()
	if len(got) != counts[200] {
		t.Errorf("the upstream received %d requests, the client saw %d allowed", len(got), counts[200])
	}
	for _, u := range got {
		id := u.Header["x-decision-id"]
		if id == "" || id != u.Header["x-request-id"] || !allowed[id] {
			t.Errorf("the upstream received %s %s with decision id %q (request id %q): no live Portcullis allowed it", u.Method, u.URI, id, u.Header["x-request-id"])
		}
	}
	return counts
}

// TestEnvoyRollingRestartAndReload: two replicas behind envoy.yaml's
// cluster, under steady load: each replica in turn is stopped (SIGTERM: it
// answers NOT_SERVING and drains) and started again, then the policy both
// read is replaced. Health checking takes the stopped replica out and
// brings it back; no check fails (zero 5xx: the retry on another replica
// covers the checks a leaving replica refuses); every request that reached
// the upstream carries the id of an allow a live Portcullis logged; after
// the reload the forbidden read is 403 from both.
func TestEnvoyRollingRestartAndReload(t *testing.T) {
	envoyBinary(t)
	r := newRig(t, 2)
	for _, p := range r.replicas {
		waitDecisions(t, p, 20)
	}
	for i := range r.replicas {
		// The other replica decides alone meanwhile.
		r.restart(t, i, func() { waitDecisions(t, r.replicas[1-i], 20) })
	}

	// The policy both replicas read is replaced (as a ConfigMap update
	// does): reads become admin-only.
	b, err := os.ReadFile(r.policy)
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(b), "{ prefix: /images, methods: [GET, HEAD], tier: service }", "{ prefix: /images, methods: [GET, HEAD], tier: admin }", 1)
	if v2 == string(b) {
		t.Fatal("the policy edit did not apply")
	}
	if err := os.WriteFile(r.policy+".tmp", []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(r.policy+".tmp", r.policy); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.replicas {
		p.waitLog(t, msgIs("policy reloaded", "generation", 2))
		waitDecisions(t, p, 20)
	}
	r.check(t, func(res loadResult) bool { return res.status == 200 || res.read && res.status == 403 })
	key := testkit.Load(t, "three-tiers").Key(t, "acme")
	for range 4 { // both replicas serve generation 2
		if a := send(t, r.st.addr, "GET", "/images/1", "", "x-api-key", key, "authorization", "None"); a.status != 403 {
			t.Errorf("a key-only read after both reloaded: %d, want 403", a.status)
		}
	}
}

// TestEnvoySingleReplicaRestart: one replica, restarted under load. While
// it is gone every check is denied with the configured status (503, Envoy's
// UAEX: the filter's status_on_error, not a Portcullis answer), the
// documented 5xx and the only one; nothing reaches the upstream without an
// allow from a live decision; once it is back, requests are allowed again.
func TestEnvoySingleReplicaRestart(t *testing.T) {
	envoyBinary(t)
	r := newRig(t, 1)
	waitDecisions(t, r.replicas[0], 20)
	const errors = "http.ingress_http.ext_authz.error"
	r.restart(t, 0, func() {
		deadline := time.Now().Add(30 * time.Second)
		for n := r.st.envoy.stat(t, errors); r.st.envoy.stat(t, errors) < n+10; {
			r.st.envoy.pollWait(t, deadline) // until ten checks found no Portcullis
		}
	})
	counts := r.check(t, func(res loadResult) bool { return res.status == 200 || res.status == 503 })
	if counts[503] == 0 {
		t.Errorf("no 503 while the only replica was gone")
	}
	for _, l := range r.st.envoy.accessLog() {
		var e accessEntry
		if json.Unmarshal([]byte(l), &e) == nil && e.Status == 503 && (!strings.Contains(e.Flags, "UAEX") || e.DecisionID != "") {
			t.Errorf("a 503 that is not the filter's status_on_error: %s", l)
		}
	}
	r.st.assertAllowed(t, testkit.Load(t, "three-tiers").Key(t, "acme"))
}
