package main

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis/portcullis/internal/testkit"
)

// binPath is the real binary, built once per test run (with the race
// detector) by TestMain and removed after.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "portcullis")
	if out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building portcullis: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	testkit.StopSharedPostgreSQL()
	os.RemoveAll(dir)
	os.Exit(code)
}

// portcullisBinary returns the binary TestMain built.
func portcullisBinary(t *testing.T) string {
	t.Helper()
	return binPath
}

// proc is a running `portcullis serve` with its JSON log lines, kept
// without bound so a chatty server never blocks on its log.
type proc struct {
	cmd         *exec.Cmd
	grpcAddr    string
	adminAddr   string
	keysAPIAddr string
	exited      chan error

	mu      sync.Mutex
	raw     strings.Builder // every byte written to stderr
	entries []map[string]any
	next    int           // waitLog's read position in entries
	more    chan struct{} // closed (and replaced) when entries grow or the process ends
	done    bool
}

// startServe starts the binary and waits for its "serving" line.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	return startServeEnv(t, nil, args...)
}

// startServeEnv starts the binary with env added to the environment.
func startServeEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(portcullisBinary(t), append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1), more: make(chan struct{})}
	go p.read(stderr)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", p.log())
		}
	})
	l := p.waitLog(t, func(m map[string]any) bool { return m["msg"] == "portcullis serving" })
	p.grpcAddr, p.adminAddr = l["grpc_addr"].(string), l["admin_addr"].(string)
	p.keysAPIAddr, _ = l["keys_api_addr"].(string)
	return p
}

func (p *proc) read(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
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
	p.done = true
	close(p.more)
	p.more = make(chan struct{})
	p.mu.Unlock()
	p.exited <- err
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitLog reads log lines until one matches; the server's own log is the
// event the test waits on, never a sleep.
func (p *proc) waitLog(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		p.mu.Lock()
		for p.next < len(p.entries) {
			m := p.entries[p.next]
			p.next++
			if match(m) {
				p.mu.Unlock()
				return m
			}
		}
		done, more := p.done, p.more
		p.mu.Unlock()
		if done {
			t.Fatalf("server exited before the expected log line")
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for a log line")
		}
	}
}

// waitFor waits until some line logged so far, or later, matches, without
// moving waitLog's position.
func (p *proc) waitFor(t *testing.T, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.entries); seen++ {
			if match(p.entries[seen]) {
				p.mu.Unlock()
				return
			}
		}
		done, more := p.done, p.more
		p.mu.Unlock()
		if done {
			t.Fatalf("server exited before the expected log line")
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for a log line")
		}
	}
}

// waitCount waits until the log holds text n times.
func (p *proc) waitCount(t *testing.T, text string, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		p.mu.Lock()
		got, done, more := strings.Count(p.raw.String(), text), p.done, p.more
		p.mu.Unlock()
		if got >= n {
			return
		}
		if done {
			t.Fatalf("server exited with %d of %d %q lines", got, n, text)
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for %d %q lines", n, text)
		}
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

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the process and returns its exit status.
func (p *proc) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatal("server did not exit")
		return -1
	}
}

func (p *proc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.adminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func checkReq(method, path string, h map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}}}}
}

// status returns the HTTP status Envoy would apply: 200 or the deny's.
func status(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// copyExample copies examples/<name> into dir.
func copyExample(t *testing.T, name, dir string) {
	t.Helper()
	src := testkit.Example(name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// configMapSwap points dir/..data at data, as the kubelet does when a
// ConfigMap changes: a new symlink renamed over the old one.
func configMapSwap(t *testing.T, dir, data string) {
	t.Helper()
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(data, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// lineOf returns the 1-based line of the first occurrence of s in path.
func lineOf(t *testing.T, path, s string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), s)
	if i < 0 {
		t.Fatalf("%s lacks %q", path, s)
	}
	return strings.Count(string(b[:i]), "\n") + 1
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeEndToEnd runs the real binary on the three-tiers example mounted
// like a Kubernetes ConfigMap, and checks each tier over gRPC, health,
// readiness, metrics, reloads (valid and invalid), the debug log and a
// clean SIGTERM.
func TestServeEndToEnd(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	copyExample(t, "three-tiers", filepath.Join(dir, "..v1"))
	configMapSwap(t, dir, "..v1")
	for _, f := range []string{"policy.yaml", "keys.yaml", "customers-jwks.json", "staff-jwks.json"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p := startServe(t, "--policy", filepath.Join(dir, "policy.yaml"), "--log-level", "debug")

	if code, _ := p.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz %d %s", code, body)
	}
	conn := dial(t, p.grpcAddr)
	hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	c := authv3.NewAuthorizationClient(conn)

	key, root := demo.Key(t, "acme"), demo.Key(t, "root")
	alice := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	rootTok := demo.Token(t, "root-access", time.Now(), time.Hour, nil)
	keyOnly := checkReq("GET", "/images", map[string]string{"x-api-key": key, "authorization": "None"})
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want int
	}{
		{"service", keyOnly, 200},
		{"service cannot write", checkReq("POST", "/images", map[string]string{"x-api-key": key}), 403},
		{"admin", checkReq("POST", "/images", map[string]string{"x-api-key": key, "authorization": "Bearer " + alice}), 200},
		{"admin again (cached token)", checkReq("PUT", "/images/1", map[string]string{"x-api-key": key, "authorization": "Bearer " + alice}), 200},
		{"superuser", checkReq("GET", "/predictors", map[string]string{"x-api-key": root, "authorization": "Bearer " + rootTok, "x-selected-customer": "globex"}), 200},
		{"no key", checkReq("GET", "/images", nil), 401},
		{"another tenant's token", checkReq("GET", "/images", map[string]string{"x-api-key": demo.Key(t, "globex"), "authorization": "Bearer " + alice}), 403},
	} {
		if got := status(t, c, tc.req); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	p.waitLog(t, msgIs("decision", "reason", "allowed", "tier", "superuser", "tenant", "globex"))

	_, metrics := p.get(t, "/metrics")
	for _, want := range []string{
		`portcullis_checks_total{reason="allowed",result="allow",tier="service",transport="grpc"} 1`,
		`portcullis_checks_total{reason="missing_credential",result="deny",tier="",transport="grpc"} 1`,
		`portcullis_checks_total{reason="tenant_mismatch",result="deny",tier="",transport="grpc"} 1`,
		`portcullis_check_duration_seconds_count{transport="grpc"} 7`,
		`portcullis_token_cache_hits_total 2`,
		`portcullis_policy_generation 1`,
		`portcullis_policy_keys 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A ConfigMap update that makes reads admin-only is picked up.
	copyExample(t, "three-tiers", filepath.Join(dir, "..v2"))
	editFile(t, filepath.Join(dir, "..v2", "policy.yaml"), "{ prefix: /images, methods: [GET, HEAD], tier: service }", "{ prefix: /images, methods: [GET, HEAD], tier: admin }")
	configMapSwap(t, dir, "..v2")
	p.waitLog(t, msgIs("policy reloaded", "generation", 2, "trigger", "file"))
	if got := status(t, c, keyOnly); got != 403 {
		t.Errorf("after reload: key-only read %d, want 403", got)
	}

	// An invalid update is refused; the last good policy keeps serving.
	copyExample(t, "three-tiers", filepath.Join(dir, "..v3"))
	editFile(t, filepath.Join(dir, "..v3", "policy.yaml"), "tier: superuser, tenant: optional }", "tier: superuserr, tenant: optional }")
	configMapSwap(t, dir, "..v3")
	failed := p.waitLog(t, msgIs("policy reload failed", "trigger", "file"))
	want := fmt.Sprintf(`policy.yaml:%d: routes[3].tier: unknown tier "superuserr"`, lineOf(t, filepath.Join(dir, "..v3", "policy.yaml"), "superuserr"))
	if !strings.Contains(fmt.Sprint(failed["error"]), want) {
		t.Errorf("reload error does not locate the problem: %v", failed["error"])
	}
	if got := status(t, c, keyOnly); got != 403 {
		t.Errorf("after a failed reload: %d, want 403 (generation 2 still serving)", got)
	}

	// SIGHUP reloads too (and fails the same way until the files are fixed).
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, msgIs("policy reload failed", "trigger", "sighup"))
	configMapSwap(t, dir, "..v1")
	p.waitLog(t, msgIs("policy reloaded", "generation", 3))
	if got := status(t, c, keyOnly); got != 200 {
		t.Errorf("after restoring v1: %d, want 200", got)
	}
	_, metrics = p.get(t, "/metrics")
	for _, want := range []string{
		`portcullis_policy_reloads_total{result="failure",trigger="file"} 1`,
		`portcullis_policy_reloads_total{result="failure",trigger="sighup"} 1`,
		`portcullis_policy_reloads_total{result="success",trigger="file"} 2`,
		`portcullis_policy_generation 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}

	// Nothing secret was logged or exported, even at debug level.
	all := p.log() + metrics
	for name, secret := range map[string]string{"acme key": key, "root key": root, "alice token": alice, "root token": rootTok,
		"alice signature": alice[strings.LastIndex(alice, ".")+1:]} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s appears in logs or metrics", name)
		}
	}
}

// TestServeReloadPlainFiles: an in-place write and an editor's atomic
// rename of the keys file each reload; a revoked key is denied after one
// reload.
func TestServeReloadPlainFiles(t *testing.T) {
	demo := testkit.Load(t, "bearer-key")
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	p := startServe(t, "--policy", filepath.Join(dir, "policy.yaml"))
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	app := checkReq("GET", "/api/x", map[string]string{"authorization": "Bearer " + demo.Key(t, "app")})
	if got := status(t, c, app); got != 200 {
		t.Fatalf("app key: %d", got)
	}

	keys := filepath.Join(dir, "keys.yaml")
	editFile(t, keys, "label: \"my-app\"", "label: \"my-app\", disabled: true") // in place
	warned := p.waitLog(t, func(m map[string]any) bool {
		return m["msg"] == "policy reloaded" || strings.HasPrefix(fmt.Sprint(m["msg"]), "policy file written in place")
	})
	if warned["level"] != "WARN" || !strings.HasSuffix(fmt.Sprint(warned["file"]), "keys.yaml") {
		t.Fatalf("an in-place write was not warned about before its reload: %v", warned)
	}
	p.waitLog(t, msgIs("policy reloaded", "generation", 2))
	if got := status(t, c, app); got != 401 {
		t.Fatalf("revoked key: %d, want 401", got)
	}

	b, _ := os.ReadFile(keys)
	tmp := filepath.Join(dir, ".keys.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Replace(string(b), ", disabled: true", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, keys); err != nil { // atomic rename
		t.Fatal(err)
	}
	p.waitLog(t, msgIs("policy reloaded", "generation", 3))
	if got := status(t, c, app); got != 200 {
		t.Fatalf("restored key: %d, want 200", got)
	}
	if n := strings.Count(p.log(), "written in place"); n != 1 {
		t.Errorf("%d in-place warnings, want 1: the atomic rename was warned about too", n)
	}
}

func TestServeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serve"},
		{"serve", "--policy", "p.yaml", "--tls-cert", "c.pem"},
		{"serve", "--policy", "p.yaml", "--client-ca", "ca.pem"},
		{"serve", "--policy", "p.yaml", "--log-level", "loud"},
	} {
		if code, _, errOut := runCLI(t, "", args...); code != 2 || !strings.Contains(errOut, "usage") {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "", "serve", "--policy", "/nonexistent.yaml", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"); code != 1 || !strings.Contains(errOut, "loading policy") {
		t.Errorf("missing policy: exit %d %q", code, errOut)
	}
}

// TestServeFailedReloadLeavesNoTrace: a reload that fails validation starts
// nothing (its new JWKS address is never fetched) and leaves readiness as
// it was; readiness asks only about the serving snapshot's key sets.
func TestServeFailedReloadLeavesNoTrace(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	release := make(chan struct{})
	var hits atomic.Int32
	jwks, err := os.ReadFile(filepath.Join(testkit.Example("three-tiers"), "staff-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(jwks)
	}))
	defer idp.Close()
	defer close(release)

	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	p := startServe(t, "--policy", pol)
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	before, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	withURI := strings.Replace(string(before), "jwks: { file: staff-jwks.json }", "jwks: { uri: "+idp.URL+"/jwks.json }", 1)
	invalid := strings.Replace(withURI, "tier: superuser, tenant: optional }", "tier: superuserr, tenant: optional }", 1)
	writeAtomic(t, pol, []byte(invalid))
	p.waitLog(t, msgIs("policy reload failed", "trigger", "file"))
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Errorf("after a failed reload: /readyz %d %s, want 200", code, body)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the failed policy's JWKS address was fetched %d times", n)
	}

	writeAtomic(t, pol, []byte(withURI))
	p.waitLog(t, msgIs("policy reloaded", "generation", 2))
	if code, _ := p.get(t, "/readyz"); code != 503 {
		t.Errorf("serving a key set whose first fetch is in flight: /readyz %d, want 503", code)
	}
	release <- struct{}{}
	p.waitLog(t, msgIs("JWK set fetched"))
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Errorf("after the first fetch: /readyz %d %s", code, body)
	}
	staff := demo.Token(t, "root-access", time.Now(), time.Hour, nil)
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	req := checkReq("GET", "/predictors", map[string]string{"x-api-key": demo.Key(t, "root"), "authorization": "Bearer " + staff})
	if got := status(t, c, req); got != 200 {
		t.Errorf("a staff token verified by the fetched set: %d", got)
	}
}
