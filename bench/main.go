// Command bench is the load harness of docs/design.md §6: it builds portcullis
// and a no-op ext_authz server, drives both with the same ext_authz client
// load in alternating runs, and prints requests/s, latency percentiles,
// server CPU per check and peak RSS, with the portcullis/no-op ratio.
//
//	go run ./bench                 # everything (a few minutes on 2 cores)
//	go run ./bench -quick          # fewer requests and rounds
//	go run ./bench -soak 10m       # heap in use at the start and end of a long cached run
//	go run ./bench -keystore       # the PostgreSQL key store: API, revocation latency, 1,000,000 keys
//	go run ./bench -envoy          # through a real Envoy: no ext_authz, the no-op, portcullis
//	go run ./bench -plans          # the cached path without and with plans: what the rate limit metadata costs
//	go run ./bench -directory      # the directory in PostgreSQL: changes to refusal, 100,000 tenants and 1,000,000 memberships, bulk replace
//	go run ./bench -startup        # a million keys from a file: exec to the first /readyz 200, and where the time goes
//
// The load client is this program, not ghz: workloads 3 and 4 need a
// distinct token on every request (10,000+ per run), and the no-op server
// must see byte-for-byte the same requests. A fresh server process serves
// every run, so no cache survives from one run to the next.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

var (
	quick    = flag.Bool("quick", false, "fewer requests and rounds (a smoke run)")
	rounds   = flag.Int("rounds", 9, "paired no-op/portcullis rounds per workload (workload 6: at most 5, each start loads a million keys)")
	only     = flag.String("only", "", "comma-separated workload numbers to run (default all)")
	soak     = flag.Duration("soak", 0, "instead of the table: run workload 2 this long and report heap in use")
	outPath  = flag.String("out", "", "also write the report to this file")
	bigKeys  = flag.Int("keys", 1_000_000, "keys in workload 6's keys file")
	nTokens  = flag.Int("tokens", 10_000, "distinct tokens for workloads 3 and 4")
	cacheMem = flag.Int("cached-tokens", 100_000, "distinct tokens for the token-cache memory measurement")
	profile  = flag.String("cpuprofile", "", "write a CPU profile of portcullis under workload 2 (concurrency 50) to this file, then stop")
	profSecs = flag.Int("profile-seconds", 10, "how long -cpuprofile profiles (for workloads 3 and 4, fewer seconds than -tokens last)")

	updatePath = flag.String("update", "", "also rewrite the harness's section of this file (BENCHMARKS.md) with the report")
	procsList  = flag.String("procs", "1,2", "GOMAXPROCS values (both servers) workload 2 at concurrency 50 also runs under; empty for none")
	withMicro  = flag.Bool("micro", true, "with every workload: run the micro-benchmarks (go test -bench) in the same run")
	withPlain  = flag.Bool("plain", true, "in every round: also the plain grpc-go no-op (no server options, Go's collector settings)")
	serveArgs  = flag.String("serve-args", "", "more arguments for portcullis serve (e.g. --gc-headroom-mib=16)")
	noopArgs   = flag.String("noop-args", "", "more arguments for the tuned no-op (e.g. -gc-headroom-mib=16)")
	serveEnv   = flag.String("serve-env", "", "more environment for portcullis serve (e.g. GOGC=1600)")
	baseline   = flag.String("baseline", "", "also run this portcullis binary (another commit's, built with scripts/build.sh) in every round, and log its ratios to the no-op beside the current build's")
	gcTrace    = flag.Bool("gctrace", true, "run the servers with GODEBUG=gctrace=1 and log the collector's CPU per check (from its own accounting, not the wall clock)")
)

func main() {
	flag.Parse()
	if err := harness(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// harness runs what the flags ask for, writes the report to stdout (and
// -out), and rewrites its section of -update's file.
func harness() error {
	if *quick {
		*rounds, *nTokens, *bigKeys, *cacheMem = 1, 2000, 100_000, 10_000
	}
	b, err := newBench(!*quickstart && !*envoyBench && !*plansBench && !*creditsBench)
	if b != nil {
		defer os.RemoveAll(b.dir)
	}
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	section := ""
	switch {
	case *profile != "":
		return b.cpuProfile(*profile)
	case *plansBench:
		section, err = "plans", b.plansBench(&buf)
	case *creditsBench:
		section, err = "credits", b.creditsBenchmark(&buf)
	case *keyStore:
		section, err = "keystore", b.keyStoreBench(&buf)
	case *quickstart:
		section, err = "quickstart", b.quickstartBench(&buf)
	case *directoryBench:
		section, err = "directory", b.directoryBenchmark(&buf)
	case *startupOnly:
		section, err = "startup", b.startupBench(&buf)
	case *envoyBench:
		section, err = "envoy", b.envoyBenchmark(&buf)
	case *soak > 0:
		section, err = "soak", b.soak(&buf, *soak)
	default:
		section, err = "load", b.run(&buf)
	}
	os.Stdout.Write(buf.Bytes())
	if err != nil {
		return err
	}
	if *outPath != "" {
		if err := os.WriteFile(*outPath, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if *updatePath != "" {
		return update(*updatePath, section, buf.String())
	}
	return nil
}

// bench holds the built binaries and the generated fixture.
type bench struct {
	dir        string
	portcullis string
	noop       string
	policy     string // smallKeys keys
	bigPolicy  string // *bigKeys keys
	key        string
	rsTokens   []string
	esTokens   []string
	garbage    []string
}

// newBench builds the servers and, with fixture, generates the fixture.
func newBench(fixture bool) (*bench, error) {
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, portcullis: filepath.Join(dir, "portcullis"), noop: filepath.Join(dir, "noop"), key: "pk_bench_" + strings.Repeat("k", 32)}
	logf("building portcullis and the no-op server")
	if out, err := exec.Command("scripts/build.sh", b.portcullis).CombinedOutput(); err != nil {
		return b, fmt.Errorf("building portcullis (run from the repository root): %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "build", "-trimpath", "-o", b.noop, "./bench/noop").CombinedOutput(); err != nil {
		return b, fmt.Errorf("building the no-op server: %v\n%s", err, out)
	}
	if !fixture {
		return b, nil
	}
	return b, b.fixture()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// smallKeys is how many keys the small policy (workloads 1-5) holds.
const smallKeys = 1000

const policyYAML = `version: 1
credentials:
  api_key: { headers: [x-api-key] }
  jwt: { headers: [authorization], none: ["None"] }
issuers:
  rs: { issuer: https://rs.bench, jwks: { file: rs.json }, audiences: [bench], algorithms: [RS256], claims: { tenant: tenant } }
  es: { issuer: https://es.bench, jwks: { file: es.json }, audiences: [bench], algorithms: [ES256], claims: { tenant: tenant } }
keys_file: KEYS
tiers:
  service: { requires_any: [ { key: any } ] }
  admin:   { requires_any: [ { key: any, jwt: rs }, { key: any, jwt: es } ] }
routes:
  - { prefix: /images, methods: [GET, HEAD], tier: service }
  - { prefix: /images, tier: admin }
`

// fixture writes the policies, JWK sets, keys files and tokens.
func (b *bench) fixture() error {
	rsKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	esKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	for name, pub := range map[string]crypto.PublicKey{"rs.json": rsKey.Public(), "es.json": esKey.Public()} {
		k, err := jwk.FromRaw(pub)
		if err != nil {
			return err
		}
		_ = k.Set(jwk.KeyIDKey, strings.TrimSuffix(name, ".json"))
		set := jwk.NewSet()
		_ = set.AddKey(k)
		j, _ := json.Marshal(set)
		if err := os.WriteFile(filepath.Join(b.dir, name), j, 0o644); err != nil {
			return err
		}
	}
	sum := sha256.Sum256([]byte(b.key))
	entry := func(id, digest string) string {
		return fmt.Sprintf(`{"id":%q,"sha256":%q,"tenant":"acme","tier":"admin","created":"2026-11-01"}`, id, digest)
	}
	// The small policy's keys file: the bench key and 999 others, a small
	// deployment's (issue 26 measured memory with 1,000 keys).
	small := `{"version":1,"keys":[` + entry("bench", hex.EncodeToString(sum[:]))
	for i := 1; i < smallKeys; i++ {
		id, tenant, d := bigKey(i)
		small += fmt.Sprintf(",\n"+`{"id":%q,"sha256":%q,"tenant":%q,"tier":"admin","created":"2026-11-01T09:30:00Z"}`, id, hex.EncodeToString(d[:]), tenant)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "keys.json"), []byte(small+"]}\n"), 0o644); err != nil {
		return err
	}
	if *directoryBench {
		return nil // its keys are in PostgreSQL
	}
	logf("writing a keys file of %d keys", *bigKeys)
	f, err := os.Create(filepath.Join(b.dir, "big-keys.json"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprint(w, `{"version":1,"keys":[`+"\n"+entry("bench", hex.EncodeToString(sum[:])))
	for i := 1; i < *bigKeys; i++ {
		id, tenant, d := bigKey(i)
		fmt.Fprintf(w, ",\n"+`{"id":%q,"sha256":%q,"tenant":%q,"tier":"admin","created":"2026-11-01T09:30:00Z"}`, id, hex.EncodeToString(d[:]), tenant)
	}
	fmt.Fprint(w, "\n]}\n")
	if err := w.Flush(); err != nil {
		return err
	}
	f.Close()
	b.policy, b.bigPolicy = filepath.Join(b.dir, "policy.yaml"), filepath.Join(b.dir, "big-policy.yaml")
	if err := os.WriteFile(b.policy, []byte(strings.Replace(policyYAML, "KEYS", "keys.json", 1)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(b.bigPolicy, []byte(strings.Replace(policyYAML, "KEYS", "big-keys.json", 1)), 0o644); err != nil {
		return err
	}

	if *startupOnly || *directoryBench {
		return nil // no tokens needed
	}
	logf("minting %d RS256 and %d ES256 tokens", *nTokens, max(*nTokens, *cacheMem))
	b.rsTokens = mint(rsKey, jwa.RS256, "rs", "https://rs.bench", *nTokens)
	b.esTokens = mint(esKey, jwa.ES256, "es", "https://es.bench", max(*nTokens, *cacheMem))
	for i := range 100 { // bad signatures: valid shape, no key made them
		t := b.rsTokens[i%len(b.rsTokens)]
		b.garbage = append(b.garbage, t[:strings.LastIndexByte(t, '.')+1]+strings.Repeat("A", 342))
	}
	return nil
}

// bigKey returns the id, tenant and digest of key i (from 1) of the big
// keys file: the entries an operator's file holds, {"id", "sha256",
// "tenant", "tier", "created"}, about 160 bytes each, over 1,000 tenants.
func bigKey(i int) (id, tenant string, digest [32]byte) {
	return fmt.Sprintf("key-%07d", i), fmt.Sprintf("org-%04d", i%1000), sha256.Sum256([]byte("k" + strconv.Itoa(i)))
}

func mint(key crypto.Signer, alg jwa.SignatureAlgorithm, kid, iss string, n int) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := jws.NewHeaders()
			_ = h.Set(jws.KeyIDKey, kid)
			for i := w; i < n; i += workers {
				c, _ := json.Marshal(map[string]any{"iss": iss, "aud": "bench", "sub": "user-" + strconv.Itoa(i), "tenant": "acme",
					"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()})
				t, err := jws.Sign(c, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
				if err != nil {
					panic(err)
				}
				out[i] = string(t)
			}
		}()
	}
	wg.Wait()
	return out
}

// server is one running server process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	admin   string
	keysAPI string
	started time.Time          // exec
	ready   time.Duration      // from exec to listening
	loaded  chan time.Duration // from exec to the key store's first load
	gcMicro atomic.Int64       // with GODEBUG=gctrace=1: the collector's CPU so far, µs
}

// start runs portcullis serving policy, with env added to its environment.
func (b *bench) start(policy string, env ...string) (*server, error) {
	cmd := exec.Command(b.portcullis, append([]string{"serve", "--policy", policy, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--pprof"},
		strings.Fields(*serveArgs)...)...)
	cmd.Env = append(append(os.Environ(), strings.Fields(*serveEnv)...), env...)
	if *gcTrace {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	}
	return launch(cmd)
}

// startNoop runs the no-op server answering with the response in the file
// (from capture), with env added to its environment.
func (b *bench) startNoop(response string, env ...string) (*server, error) {
	cmd := exec.Command(b.noop, append([]string{"-response", response}, strings.Fields(*noopArgs)...)...)
	cmd.Env = append(os.Environ(), env...)
	if *gcTrace {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	}
	return launch(cmd)
}

// startPlain runs the no-op as a plain grpc-go server (-plain) answering
// the same response, with env added to its environment.
func (b *bench) startPlain(response string, env ...string) (*server, error) {
	cmd := exec.Command(b.noop, "-plain", "-response", response)
	cmd.Env = append(os.Environ(), env...)
	return launch(cmd)
}

// capture asks portcullis serving policy for its answer to r and writes it,
// encoded, to a file for the no-op to answer with: the client then reads
// the same bytes from both servers, and the ratio is what deciding costs.
func (b *bench) capture(policy string, r *authv3.CheckRequest) (string, error) {
	s, err := b.start(policy)
	if err != nil {
		return "", err
	}
	defer s.stop()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), r)
	if err != nil {
		return "", err
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

// launch starts cmd and waits until it logs that it is serving. The key
// store's first load, when it comes, is timed from exec too (s.loaded).
func launch(cmd *exec.Cmd) (*server, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "portcullis serving" {
			s := &server{cmd: cmd, started: t0, ready: time.Since(t0), loaded: make(chan time.Duration, 1)}
			s.addr, _ = m["grpc_addr"].(string)
			s.admin, _ = m["admin_addr"].(string)
			s.keysAPI, _ = m["keys_api_addr"].(string)
			go func() {
				for sc.Scan() {
					if cpu, ok := gcTraceCPU(sc.Text()); ok {
						s.gcMicro.Add(int64(cpu * 1000))
						continue
					}
					if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "key store loaded" && m["resync"] == false {
						select {
						case s.loaded <- time.Since(t0):
						default:
						}
					}
				}
			}()
			return s, nil
		}
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("server did not start")
}

// gcTraceCPU returns the CPU milliseconds a GODEBUG=gctrace=1 line says a
// collection took ("gc 7 @1.2s 1%: … ms clock, 0.1+0.5/0.2/0.3+0.02 ms
// cpu, …": assists, background, idle and the pauses, summed).
func gcTraceCPU(line string) (float64, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	_, rest, ok := strings.Cut(line, " ms clock, ")
	if !ok {
		return 0, false
	}
	cpu, _, ok := strings.Cut(rest, " ms cpu")
	if !ok {
		return 0, false
	}
	total := 0.0
	for _, f := range strings.FieldsFunc(cpu, func(r rune) bool { return r == '+' || r == '/' }) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, false
		}
		total += v
	}
	return total, true
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// cpu returns the process's user+system CPU time so far.
func (s *server) cpu() time.Duration { return procCPU(s.cmd.Process.Pid) }

// memKB returns a /proc/<pid>/status field (VmHWM: peak RSS, VmRSS: now).
func (s *server) memKB(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

// metric reads one unlabelled metric from portcullis's /metrics.
func (s *server) metric(name string) float64 {
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// settle waits (at most 5 s) until the server has been idle for 100 ms,
// using under 1 ms of CPU (its CPU clock counts nanoseconds, and a
// server's timers and tickers always use a few): what its start left
// running (the collector after a million keys were loaded, the scavenger
// returning their garbage) must not be counted as the checks' cost. It is
// measurement hygiene, not synchronisation: a server that never settles is
// measured anyway.
func (s *server) settle() {
	prev := s.cpu()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if now := s.cpu(); now-prev < time.Millisecond {
			return
		} else {
			prev = now
		}
	}
}

// result is one measured run.
type result struct {
	rps           float64
	p50, p90, p99 time.Duration
	cpuPerCheck   time.Duration
	gcPerCheck    time.Duration // with -gctrace: the collector's part of cpuPerCheck
	peakRSSKB     int64
	allowed       int
}

// load sends n requests with conc concurrent callers and measures.
func load(s *server, conc, n int, req func(i int) *authv3.CheckRequest) (result, error) {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	warm := authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/healthz"}}}}
	for range 200 { // connections and code paths warm; no token cached
		if _, err := c.Check(context.Background(), &warm); err != nil {
			return result{}, err
		}
	}
	s.settle()
	lat := make([][]time.Duration, conc)
	allowed := make([]int, conc)
	var next int64 = -1
	var mu sync.Mutex
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		next++
		return int(next)
	}
	cpu0, gc0 := s.cpu(), s.gcMicro.Load()
	t0 := time.Now()
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := take(); i < n; i = take() {
				r := req(i)
				start := time.Now()
				resp, err := c.Check(context.Background(), r)
				lat[w] = append(lat[w], time.Since(start))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if resp.GetOkResponse() != nil {
					allowed[w]++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := s.cpu() - cpu0
	gc := time.Duration(s.gcMicro.Load()-gc0) * time.Microsecond
	if firstErr != nil {
		return result{}, firstErr
	}
	var all []time.Duration
	ok := 0
	for w := range conc {
		all = append(all, lat[w]...)
		ok += allowed[w]
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{rps: float64(n) / elapsed.Seconds(), p50: pct(0.50), p90: pct(0.90), p99: pct(0.99),
		cpuPerCheck: cpu / time.Duration(n), gcPerCheck: gc / time.Duration(n), peakRSSKB: s.memKB("VmHWM"), allowed: ok}, nil
}

func checkReq(method string, h map[string]string) *authv3.CheckRequest {
	h[":path"], h[":method"], h["x-request-id"] = "/images/1", method, "bench"
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: "/images/1?size=2", Host: "api.bench", Headers: h}}}}
}

// workload is one row group of the table.
type workload struct {
	num     int
	name    string
	policy  string
	n1, n50 int // requests at concurrency 1 and 50
	req     func(i int) *authv3.CheckRequest
	allow   bool // every request must be allowed (else: every one denied)
}

func (b *bench) workloads() []workload {
	scale := func(n int) int {
		if *quick {
			return max(n/5, 200)
		}
		return n
	}
	keyOnly := checkReq("GET", map[string]string{"x-api-key": b.key, "authorization": "None"})
	cached := checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + b.rsTokens[0]})
	distinct := func(toks []string) func(int) *authv3.CheckRequest {
		reqs := make([]*authv3.CheckRequest, len(toks))
		for i, t := range toks {
			reqs[i] = checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + t})
		}
		return func(i int) *authv3.CheckRequest { return reqs[i%len(reqs)] }
	}
	deny := make([]*authv3.CheckRequest, 0, 200)
	for i := range 100 {
		deny = append(deny, checkReq("GET", map[string]string{"x-api-key": fmt.Sprintf("pk_wrong_%032d", i)}),
			checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + b.garbage[i]}))
	}
	first := min(*nTokens, len(b.rsTokens))
	return []workload{
		{1, "API key only", b.policy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return keyOnly }, true},
		{2, "key + cached RS256 JWT", b.policy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return cached }, true},
		{3, "key + first-sight RS256 JWT", b.policy, min(3000, first), first, distinct(b.rsTokens[:first]), true},
		{4, "key + first-sight ES256 JWT", b.policy, min(3000, first), first, distinct(b.esTokens[:first]), true},
		{5, "deny: wrong keys, bad signatures", b.policy, scale(2500), scale(20000), func(i int) *authv3.CheckRequest { return deny[i%len(deny)] }, false},
		{6, fmt.Sprintf("API key only, %d keys", *bigKeys), b.bigPolicy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return keyOnly }, true},
	}
}

// explain runs `portcullis check` on one request, to say why it was decided
// as it was.
func (b *bench) explain(policy string, r *authv3.CheckRequest) string {
	h := r.GetAttributes().GetRequest().GetHttp()
	args := []string{"check", "--policy", policy, "--method", h.GetMethod(), "--path", h.GetPath()}
	for k, v := range h.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			args = append(args, "-H", k+": "+v)
		}
	}
	out, _ := exec.Command(b.portcullis, args...).CombinedOutput()
	return string(out)
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return result{
		rps:         pick(func(r result) float64 { return r.rps }),
		p50:         time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p90:         time.Duration(pick(func(r result) float64 { return float64(r.p90) })),
		p99:         time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
		cpuPerCheck: time.Duration(pick(func(r result) float64 { return float64(r.cpuPerCheck) })),
		peakRSSKB:   int64(pick(func(r result) float64 { return float64(r.peakRSSKB) })),
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// wanted reports whether -only selects workload num (everything when
// -only is empty).
func wanted(num int) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n == num {
			return true
		}
	}
	return false
}

// command is how this run was started, for the report.
func command() string { return strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " ")) }

func (b *bench) run(out io.Writer) error {
	rep := &report{}
	for _, w := range b.workloads() {
		if !wanted(w.num) {
			continue
		}
		resp, err := b.capture(w.policy, w.req(0))
		if err != nil {
			return fmt.Errorf("workload %d: %w", w.num, err)
		}
		if w.num == 6 {
			st, err := b.startN(w.policy, *starts)
			if err != nil {
				return err
			}
			slices.Sort(st.rssKB)
			rep.notes = append(rep.notes, fmt.Sprintf("- workload 6: %d keys from a file, **%s from exec to the first /readyz 200** (median of %d starts; min %s, max %s; "+
				"`go run ./bench -startup` says where the time goes), **RSS %d MB** after load.",
				*bigKeys, secs(medianDur(st.ready)), len(st.ready), secs(slices.Min(st.ready)), secs(slices.Max(st.ready)), st.rssKB[len(st.rssKB)/2]/1024))
		}
		for _, conc := range []int{1, 50} {
			r, err := b.measure(w, conc, 0, resp)
			if err != nil {
				return err
			}
			rep.rows = append(rep.rows, r)
		}
		if w.num == 2 {
			for _, p := range strings.Split(*procsList, ",") {
				if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && n > 0 {
					r, err := b.measure(w, 50, n, resp)
					if err != nil {
						return err
					}
					rep.rows = append(rep.rows, r)
				}
			}
		}
	}
	if *gcTrace {
		var parts []string
		for _, r := range rep.rows {
			if r.procs == 0 && r.conc == 50 && len(r.noop) > 0 {
				gc := func(rs []result) time.Duration {
					v := make([]time.Duration, len(rs))
					for i, x := range rs {
						v[i] = x.gcPerCheck
					}
					return medianDur(v)
				}
				parts = append(parts, fmt.Sprintf("workload %d: no-op %.1f µs, portcullis %.1f µs", r.num, float64(gc(r.noop))/1e3, float64(gc(r.pc))/1e3))
			}
		}
		rep.notes = append(rep.notes, "- the collector's CPU per check at conc 50 (GODEBUG=gctrace=1, the runtime's own accounting; medians): "+strings.Join(parts, "; ")+".")
	}
	if wanted(7) {
		line, err := b.tokenCacheMemory()
		if err != nil {
			return err
		}
		rep.notes = append(rep.notes, line)
	}
	if *withMicro && *only == "" {
		logf("micro-benchmarks")
		pkgs := []string{"./authn", "./cache", "./extauthz", "./keys", "./policy"}
		all, err := runMicro(".", "1", pkgs...)
		if err != nil {
			return err
		}
		par, err := runMicro("Parallel", "2,4", pkgs...)
		if err != nil {
			return err
		}
		rep.micro = append(all, par...)
	}
	rep.write(out, command())
	return nil
}

// measure runs workload w at concurrency conc for -rounds rounds of the
// no-op (answering resp) and portcullis back to back, alternating which
// goes first, under GOMAXPROCS procs (0: the machine's).
func (b *bench) measure(w workload, conc, procs int, resp string) (*row, error) {
	n := w.n1
	if conc == 50 {
		n = w.n50
	}
	var env []string
	if procs > 0 {
		env = []string{"GOMAXPROCS=" + strconv.Itoa(procs)}
	}
	r := &row{num: w.num, name: w.name, conc: conc, procs: procs}
	nRounds := *rounds
	if w.policy == b.bigPolicy {
		nRounds = min(nRounds, 5)
	}
	// Each round runs the servers back to back, the order rotating from
	// round to round: the tuned no-op, portcullis and (procs 0, -plain) the
	// plain grpc-go no-op.
	const (
		tuned = iota
		pc
		plainNoop
		base
	)
	ways := []int{tuned, pc}
	if *withPlain && procs == 0 {
		ways = append(ways, plainNoop)
	}
	if *baseline != "" {
		ways = append(ways, base)
	}
	for round := range nRounds {
		for k := range ways {
			way := ways[(k+round)%len(ways)]
			var s *server
			var err error
			switch way {
			case tuned:
				s, err = b.startNoop(resp, env...)
			case plainNoop:
				s, err = b.startPlain(resp, env...)
			case base:
				bb := *b
				bb.portcullis = *baseline
				s, err = bb.start(w.policy, env...)
			default:
				s, err = b.start(w.policy, env...)
			}
			if err != nil {
				return nil, err
			}
			res, err := load(s, conc, n, w.req)
			s.stop()
			if err != nil {
				return nil, fmt.Errorf("workload %d: %w", w.num, err)
			}
			switch way {
			case tuned:
				r.noop = append(r.noop, res)
			case plainNoop:
				r.plain = append(r.plain, res)
			case base:
				r.base = append(r.base, res)
			default:
				if w.allow && res.allowed != n || !w.allow && res.allowed != 0 {
					return nil, fmt.Errorf("workload %d: %d of %d allowed: the fixture is wrong; portcullis check says:\n%s",
						w.num, res.allowed, n, b.explain(w.policy, w.req(0)))
				}
				r.pc = append(r.pc, res)
			}
			logf("workload %d c=%d procs=%d %s round %d: %.0f req/s, p99 %s, %s CPU/check (collector %.1f µs), peak RSS %d MB", w.num, conc, procs,
				[]string{"no-op", "portcullis", "plain no-op", "baseline"}[way], round+1, res.rps, us(res.p99), us(res.cpuPerCheck), float64(res.gcPerCheck)/1e3, res.peakRSSKB/1024)
		}
		if alg := firstSightAlg[w.num]; alg != "" {
			// The reference of first sight, between the rounds it is
			// compared with.
			r.verify = append(r.verify, verifyCPU(alg, 1000))
		}
	}
	if len(r.base) > 0 {
		logf("workload %d c=%d: CPU/check ÷ no-op: portcullis %.2f×, baseline %.2f×; req/s ÷ no-op: %.2f×, %.2f×; portcullis ÷ baseline CPU/check %.2f×",
			w.num, conc, r.ratio(cpu), ratioOf(r.base, r.noop, cpu), r.ratio(rps), ratioOf(r.base, r.noop, rps), ratioOf(r.pc, r.base, cpu))
	}
	return r, nil
}

// tokenCacheMemory fills the verified-token cache with distinct tokens and
// reports resident memory.
func (b *bench) tokenCacheMemory() (string, error) {
	s, err := b.start(b.policy)
	if err != nil {
		return "", err
	}
	defer s.stop()
	base := s.memKB("VmRSS")
	reqs := make([]*authv3.CheckRequest, *cacheMem)
	for i := range reqs {
		reqs[i] = checkReq("POST", map[string]string{"x-api-key": b.key, "authorization": "Bearer " + b.esTokens[i]})
	}
	if _, err := load(s, 50, len(reqs), func(i int) *authv3.CheckRequest { return reqs[i] }); err != nil {
		return "", err
	}
	return fmt.Sprintf("- token cache: %d cached tokens (portcullis_token_cache_entries %.0f): RSS %d MB (%d MB before), peak %d MB; Go heap in use %.0f MB",
		*cacheMem, s.metric("portcullis_token_cache_entries"), s.memKB("VmRSS")/1024, base/1024, s.memKB("VmHWM")/1024,
		s.metric("go_memstats_heap_inuse_bytes")/1e6), nil
}

// soak runs workload 2 at concurrency 50 for d and reports the heap in use
// after warm-up and at the end.
func (b *bench) soak(out io.Writer, d time.Duration) error {
	// GOGC set: the collector runs as Go's default would (no headroom), so
	// that the heap in use at two instants compares what is live, not how
	// much garbage a roomier heap held at each.
	s, err := b.start(b.policy, "GOGC=100")
	if err != nil {
		return err
	}
	defer s.stop()
	w := b.workloads()[1]
	if _, err := load(s, 50, 20000, w.req); err != nil {
		return err
	}
	h0, g0 := s.metric("go_memstats_heap_inuse_bytes"), s.metric("go_goroutines")
	t0 := time.Now()
	total := 0
	for time.Since(t0) < d {
		if _, err := load(s, 50, 50000, w.req); err != nil {
			return err
		}
		total += 50000
	}
	h1, g1 := s.metric("go_memstats_heap_inuse_bytes"), s.metric("go_goroutines")
	header(out, command())
	fmt.Fprintf(out, "- soak: workload 2, concurrency 50, %s, %d checks: heap in use %.1f MB at start, %.1f MB at end; goroutines %.0f → %.0f; RSS %d MB\n",
		d, total, h0/1e6, h1/1e6, g0, g1, s.memKB("VmRSS")/1024)
	return nil
}

// cpuProfile records a CPU profile (-profile-seconds) of portcullis serving workload 2
// (set -only to pick another) at concurrency 50, and one of the no-op
// server under the same load beside it (path + ".noop").
func (b *bench) cpuProfile(path string) error {
	ws := b.workloads()
	w := ws[1]
	if n, err := strconv.Atoi(*only); err == nil && n >= 1 && n <= len(ws) {
		w = ws[n-1]
	}
	resp, err := b.capture(w.policy, w.req(0))
	if err != nil {
		return err
	}
	s, err := b.start(w.policy)
	if err != nil {
		return err
	}
	defer s.stop()
	// Each batch goes on where the one before stopped, so a first-sight
	// workload's tokens are new to the server until its -tokens run out
	// (a batch starting again at the first would profile the cached path).
	next := 0
	batch := func(i int) *authv3.CheckRequest { return w.req(next + i) }
	done := make(chan error, 1)
	go func() { done <- saveProfile(s, *profSecs, path) }()
	for loop := true; loop; {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			loop = false
		default:
			if _, err := load(s, 50, 20000, batch); err != nil {
				return err
			}
			next += 20000
		}
	}
	if (w.num == 3 || w.num == 4) && next > *nTokens {
		logf("the profile sent %d checks of %d distinct tokens: the later ones found theirs cached (raise -tokens)", next, *nTokens)
	}
	logf("CPU profile of portcullis under workload %d written to %s", w.num, path)
	noop, err := launch(exec.Command(b.noop, "-response", resp, "-cpuprofile", path+".noop"))
	if err != nil {
		return err
	}
	next = 0
	for t0 := time.Now(); time.Since(t0) < time.Duration(*profSecs)*time.Second; next += 20000 {
		if _, err := load(noop, 50, 20000, batch); err != nil {
			noop.stop()
			return err
		}
	}
	noop.stop()
	logf("CPU profile of the no-op under the same load written to %s.noop", path)
	return nil
}

// saveProfile writes a CPU profile of s over the next seconds to path.
func saveProfile(s *server, seconds int, path string) error {
	resp, err := http.Get("http://" + s.admin + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
