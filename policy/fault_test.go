package policy_test

import (
	"context"
	"crypto"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// flakyIdP serves a JWK set on a fixed loopback address; the test can swap
// the set, make it answer 503, or stop and restart its listener.
//
//lint:ignore ST1003 "IdP" is how identity provider is written
type flakyIdP struct {
	addr string
	mu   sync.Mutex
	doc  []byte
	down bool
	srv  *http.Server
}

// start listens on f.addr (any free port the first time). A restart can
// find the port taken by some client's ephemeral port; the IdP then stays
// down, which is one more fault, and the caller tries again later.
func (f *flakyIdP) start() error {
	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	f.addr = lis.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		doc, down := f.doc, f.down
		f.mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(doc)
	})}
	f.srv = srv
	go func() { _ = srv.Serve(lis) }()
	return nil
}

func (f *flakyIdP) stop() {
	if f.srv != nil {
		_ = f.srv.Close()
		f.srv = nil
	}
}

// TestFaultsUnderLoad runs concurrent checks while the policy is reloaded
// over and over (valid and invalid files), the IdP rotates its key set,
// fails, and is stopped and restarted. Every decision must be the one the
// snapshot that made it prescribes; the only other outcome allowed is 503
// before the IdP's key set was ever fetched.
func TestFaultsUnderLoad(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	for _, f := range []string{"keys.yaml", "staff-jwks.json"} {
		b, _ := os.ReadFile(filepath.Join(demo.Dir, f))
		write(t, filepath.Join(dir, f), b)
	}
	custJWKS, _ := os.ReadFile(filepath.Join(demo.Dir, "customers-jwks.json"))
	custKey, _ := demo.Signer(t, "customers")
	extra := testkit.RSAKey(t, 2048)
	rotated := testkit.JWKS(t, map[string]crypto.PublicKey{"customers-2026-1": custKey.Public(), "next-2027": extra.Public()})

	idp := &flakyIdP{addr: "127.0.0.1:0", doc: custJWKS, down: true}
	if err := idp.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { idp.stop() }()

	base, _ := os.ReadFile(demo.Policy())
	polA := strings.Replace(string(base), "{ file: customers-jwks.json }", "{ uri: http://"+idp.addr+"/jwks.json }", 1)
	polB := strings.Replace(polA, "methods: [GET, HEAD], tier: service", "methods: [GET, HEAD], tier: admin", 1)
	polBad := strings.Replace(polA, "tier: superuser, tenant: optional }", "tier: root }", 1)
	path := filepath.Join(dir, "policy.yaml")
	reg := cache.NewRegistry(cache.RemoteOptions{MinRefetch: time.Millisecond, Timeout: 2 * time.Second}, false)
	defer reg.Close()
	load := func(body string) (*policy.Snapshot, error) {
		tmp := path + ".tmp"
		write(t, tmp, []byte(body))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		return policy.Load(path, policy.LoadOptions{JWKS: reg})
	}
	snapB, err := load(polB)
	if err != nil {
		t.Fatal(err)
	}
	snapA, err := load(polA)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(snapA, policy.EngineOptions{})
	reg.Commit(snapA.Remotes()) // published, as the server commits what it serves

	key, globex := demo.Key(t, "acme"), demo.Key(t, "globex")
	alice := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	unknownKid := testkit.Sign(t, extra, "RS256", map[string]any{"kid": "k3"}, demo.Tokens["alice-access"].Claims)
	type outcome struct {
		status int
		reason reason.Code
	}
	reqs := []struct {
		req     policy.Request
		token   bool               // its outcome depends on the key set being known
		expects map[string]outcome // by snapshot version
	}{
		{policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{"x-api-key": key}}, false,
			map[string]outcome{snapA.Version(): {200, reason.Allowed}, snapB.Version(): {403, reason.TierTooLow}}},
		{policy.Request{Method: "POST", Path: "/images", Headers: map[string]string{"x-api-key": key, "authorization": "Bearer " + alice}}, true,
			map[string]outcome{snapA.Version(): {200, reason.Allowed}, snapB.Version(): {200, reason.Allowed}}},
		{policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{"x-api-key": key, "authorization": "Bearer " + unknownKid}}, true,
			map[string]outcome{snapA.Version(): {401, reason.TokenUnknownKey}, snapB.Version(): {401, reason.TokenUnknownKey}}},
		{policy.Request{Method: "GET", Path: "/images", Headers: map[string]string{"x-api-key": globex, "authorization": "Bearer " + alice}}, true,
			map[string]outcome{snapA.Version(): {403, reason.TenantMismatch}, snapB.Version(): {403, reason.TenantMismatch}}},
		{policy.Request{Method: "GET", Path: "/images"}, false,
			map[string]outcome{snapA.Version(): {401, reason.MissingCredential}, snapB.Version(): {401, reason.MissingCredential}}},
		{policy.Request{Method: "GET", Path: "/images/../predictors", Headers: map[string]string{"x-api-key": key}}, false,
			map[string]outcome{snapA.Version(): {400, reason.BadPath}, snapB.Version(): {400, reason.BadPath}}},
	}

	const workers, perWorker = 4, 5000
	var (
		everKnown              atomic.Bool // a token check got past the key set once
		decisions, unavailable atomic.Int64
		reloadsOK, reloadsBad  atomic.Int64
		idpFlips, idpRestarts  atomic.Int64
		wrong                  atomic.Int64
		done                   = make(chan struct{})
		idpPhase               = make(chan struct{}) // closed once the IdP's absence was seen
		wg                     sync.WaitGroup
		firstErr               sync.Once
		firstErrMsg            string
	)
	fail := func(format string, args ...any) {
		wrong.Add(1)
		firstErr.Do(func() { firstErrMsg = fmt.Sprintf(format, args...) })
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				r := reqs[(i+w)%len(reqs)]
				// Known before this decision began: a decision that began
				// before another worker saw the set may still find none.
				knownBefore := everKnown.Load()
				d := eng.Decide(context.Background(), r.req)
				decisions.Add(1)
				if d.Allow == (d.Status() != 200) || (!d.Allow && len(d.SetHeaders)+len(d.RemoveHeaders) > 0) {
					fail("inconsistent decision %+v", d)
				}
				if r.token && d.Status() == 503 && d.Reason == reason.JWKSUnavailable {
					if knownBefore {
						fail("503 after the key set was known (stale keys must be served)")
					}
					if unavailable.Add(1) == 20 {
						close(idpPhase)
					}
					continue
				}
				if r.token {
					everKnown.Store(true)
				}
				want, ok := r.expects[d.PolicyVersion]
				if !ok {
					fail("decided by unknown policy version %q", d.PolicyVersion)
				} else if d.Status() != want.status || d.Reason != want.reason {
					fail("request %d under %s: %d %s, want %d %s", (i+w)%len(reqs), d.PolicyVersion, d.Status(), d.Reason, want.status, want.reason)
				}
			}
		}()
	}

	var chaos sync.WaitGroup
	chaos.Add(2)
	go func() { // reloads: A, invalid, B, invalid, …
		defer chaos.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			body := []string{polA, polBad, polB, polBad}[i%4]
			s, err := load(body)
			switch {
			case body == polBad && err == nil:
				fail("an invalid policy loaded")
			case body == polBad:
				reloadsBad.Add(1)
			case err != nil:
				fail("a valid policy failed to load: %v", err)
			default:
				eng.Swap(s)
				reg.Commit(s.Remotes())
				reloadsOK.Add(1)
			}
		}
	}()
	go func() { // the IdP: up, rotated, failing, stopped and restarted
		defer chaos.Done()
		select { // first, checks meet an IdP that never answered
		case <-idpPhase:
		case <-done:
			return
		}
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			switch i % 4 {
			case 0:
				idp.mu.Lock()
				idp.doc, idp.down = custJWKS, false
				idp.mu.Unlock()
			case 1:
				idp.mu.Lock()
				idp.doc = rotated
				idp.mu.Unlock()
			case 2:
				idp.mu.Lock()
				idp.down = true
				idp.mu.Unlock()
			case 3:
				idp.stop()
				if idp.start() == nil {
					idpRestarts.Add(1)
				}
				idp.mu.Lock()
				idp.down = false
				idp.mu.Unlock()
			}
			idpFlips.Add(1)
			// Let some checks run against this state; the bound keeps the
			// test's length fixed, not its correctness.
			for range 50 {
				select {
				case <-done:
					return
				default:
					_, _ = reg.Remote("http://"+idp.addr+"/jwks.json", 0).Refetch(context.Background())
				}
			}
		}
	}()
	wg.Wait()
	close(done)
	chaos.Wait()

	t.Logf("%d decisions (%d expected 503s before the first key set), %d reloads, %d invalid files refused, %d IdP state changes, %d IdP restarts",
		decisions.Load(), unavailable.Load(), reloadsOK.Load(), reloadsBad.Load(), idpFlips.Load(), idpRestarts.Load())
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d wrong decisions; first: %s", n, firstErrMsg)
	}
	if reloadsOK.Load() == 0 || reloadsBad.Load() == 0 {
		t.Fatal("the reloader did not run both kinds of reload")
	}
}
