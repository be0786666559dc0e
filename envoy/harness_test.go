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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/portcullis/portcullis/envoy/proxy"
	"github.com/portcullis/portcullis/internal/testkit"
)

// binPath is the real portcullis binary, built once per test run by
// TestMain, or the one PORTCULLIS_BIN names (a release build, say, to run
// these tests against it). It is built without the race detector: the
// shipped configurations give a check 250 ms, and a race-instrumented
// server on a machine busy with the rest of make test could spend that
// (cmd/portcullis's tests run the binary under the race detector).
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
	build := exec.Command("go", "build", "-o", binPath, "./cmd/portcullis")
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

// envoyBinary finds the real Envoy (proxy.Binary). Missing under CI is a
// failure; elsewhere the test is skipped.
func envoyBinary(t testing.TB) string {
	t.Helper()
	bin, err := proxy.Binary(testkit.Root())
	if err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
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

// doc is a decoded Envoy configuration document.
type doc = proxy.Config

// The document accessors of package proxy, under short names.
var (
	field = proxy.Field
	obj   = proxy.Obj
	list  = proxy.List
	path  = proxy.Path
	walk  = proxy.Walk
)

// loadDoc reads an Envoy configuration file.
func loadDoc(t testing.TB, file string) doc {
	t.Helper()
	d, err := proxy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// endpoint is where a rewritten cluster sends its traffic.
type endpoint = proxy.Endpoint

var (
	tcp         = proxy.TCP
	unixSockets = proxy.Unix
)

// rewriteAddresses is proxy.Rewrite: every listener and the admin
// interface on 127.0.0.1:0, every cluster at the endpoints to names.
func rewriteAddresses(t testing.TB, d doc, to map[string][]endpoint) doc {
	t.Helper()
	if err := proxy.Rewrite(d, to); err != nil {
		t.Fatal(err)
	}
	return d
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

// envoy is a running Envoy (proxy.Envoy) with test-failing accessors.
type envoy struct{ *proxy.Envoy }

// validate runs `envoy --mode validate` on the configuration in file.
func validate(t testing.TB, file string) {
	t.Helper()
	if err := proxy.Validate(envoyBinary(t), file); err != nil {
		t.Fatal(err)
	}
}

// writeDoc writes d as YAML into dir/name.
func writeDoc(t testing.TB, dir, name string, d doc) string {
	t.Helper()
	b, err := proxy.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startEnvoy validates and runs the configuration d, and returns once
// Envoy is ready; it is stopped when the test ends.
func startEnvoy(t *testing.T, d doc) *envoy {
	t.Helper()
	pe, err := proxy.Start(envoyBinary(t), t.TempDir(), d, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pe.Stop()
		if t.Failed() {
			t.Logf("envoy stderr (last 4 KiB):\n%s\nenvoy stdout (last 4 KiB):\n%s", tail(pe.Stderr(), 4096), tail(pe.Stdout(), 4096))
		}
	})
	return &envoy{pe}
}

// pollWait fails when Envoy exited or the deadline passed, else waits a
// poll interval.
func (e *envoy) pollWait(t testing.TB, deadline time.Time) {
	t.Helper()
	if err := e.PollWait(deadline); err != nil {
		t.Fatal(err)
	}
}

// listener returns the address Envoy bound for its listener named name, or
// for its only listener when name is "".
func (e *envoy) listener(t testing.TB, name string) string {
	t.Helper()
	a, err := e.Listener(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// stat returns one counter or gauge, 0 when absent.
func (e *envoy) stat(t testing.TB, name string) int {
	t.Helper()
	n, err := e.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// accessLog returns the access log lines written so far.
func (e *envoy) accessLog() []string { return e.AccessLog() }

// waitAccessLog waits until an access log line contains s, and returns it.
func (e *envoy) waitAccessLog(t testing.TB, s string) string {
	t.Helper()
	l, err := e.WaitAccessLog(s, 30*time.Second)
	if err != nil {
		t.Fatalf("%v; the log:\n%s", err, tail(e.Stdout(), 4096))
	}
	return l
}

// hostHealth returns, for cluster, each host's address and health flags.
func (e *envoy) hostHealth(t testing.TB, cluster string) map[string]string {
	t.Helper()
	h, err := e.HostHealth(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return h
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
