package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
)

// checkKey runs `portcullis check` on the bearer-key-style policy at pol
// with key and returns the status.
func checkKey(t *testing.T, pol, header, key string) int {
	t.Helper()
	_, out, errOut := runCLI(t, "", "check", "--policy", pol, "--path", "/api/x", "-H", header+key)
	var r struct{ Status int }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	return r.Status
}

func mustRun(t *testing.T, code int, args ...string) string {
	t.Helper()
	got, out, errOut := runCLI(t, "", args...)
	if got != code {
		t.Fatalf("%v: exit %d, want %d\n%s%s", args, got, code, out, errOut)
	}
	return out
}

// TestKeysLifecycle drives every keys subcommand on a copy of the
// bearer-key example, checking each change with the real decision path.
func TestKeysLifecycle(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	pol := filepath.Join(dir, "policy.yaml")
	keysFile := filepath.Join(dir, "keys.yaml")
	bearer := "authorization: Bearer "

	// new: printed once, added to the file, works.
	out := mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "ci", "--label", "CI bot", "--description", "deploys", "--quiet")
	k1 := strings.TrimSpace(out)
	if !strings.HasPrefix(k1, keys.DefaultPrefix) || strings.Contains(k1, "\n") {
		t.Fatalf("new printed %q", out)
	}
	if b, _ := os.ReadFile(keysFile); strings.Contains(string(b), k1) {
		t.Fatal("the plaintext key was written to the keys file")
	}
	if s := checkKey(t, pol, bearer, k1); s != 200 {
		t.Fatalf("new key: %d", s)
	}
	mustRun(t, 1, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "ci") // duplicate id refused
	mustRun(t, 1, "keys", "new", "--policy", pol, "--tenant", "app", "--tier", "gold")

	// list never shows a secret or a full hash.
	list := mustRun(t, 0, "keys", "list", "--policy", pol)
	listJSON := mustRun(t, 0, "keys", "list", "--policy", pol, "--json")
	for _, secret := range []string{k1, keys.DigestOf(k1).String(), testkit.Load(t, "bearer-key").Keys["app"]} {
		if strings.Contains(list+listJSON, secret) {
			t.Fatal("list shows a secret")
		}
	}
	if !strings.Contains(list, "CI bot") || !strings.Contains(list, "revoked") {
		t.Errorf("list:\n%s", list)
	}

	// rotate with overlap: both values work; --finish: only the new one.
	k2 := strings.TrimSpace(mustRun(t, 0, "keys", "rotate", "ci", "--overlap", "1h", "--policy", pol, "--quiet"))
	if k2 == k1 || checkKey(t, pol, bearer, k1) != 200 || checkKey(t, pol, bearer, k2) != 200 {
		t.Fatal("during the overlap both values must work")
	}
	if !strings.Contains(mustRun(t, 0, "keys", "list", "--policy", pol), "rotating") {
		t.Error("a key in its overlap is not listed as rotating")
	}
	mustRun(t, 0, "keys", "rotate", "ci", "--finish", "--policy", pol)
	if checkKey(t, pol, bearer, k1) != 401 || checkKey(t, pol, bearer, k2) != 200 {
		t.Fatal("after --finish only the new value may work")
	}
	// rotate without overlap: the old value stops at once.
	k3 := strings.TrimSpace(mustRun(t, 0, "keys", "rotate", "ci", "--policy", pol, "--quiet"))
	if checkKey(t, pol, bearer, k2) != 401 || checkKey(t, pol, bearer, k3) != 200 {
		t.Fatal("rotation without overlap")
	}
	mustRun(t, 1, "keys", "rotate", "nobody", "--policy", pol)

	// revoke one; revoke all of a tenant; delete.
	mustRun(t, 0, "keys", "revoke", "ci", "--policy", pol)
	if s := checkKey(t, pol, bearer, k3); s != 401 {
		t.Fatalf("revoked key: %d", s)
	}
	k4 := strings.TrimSpace(mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "k4", "--quiet"))
	k5 := strings.TrimSpace(mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "other", "--id", "k5", "--quiet"))
	mustRun(t, 0, "keys", "revoke", "--tenant", "app", "--policy", pol)
	if checkKey(t, pol, bearer, k4) != 401 || checkKey(t, pol, bearer, k5) != 200 {
		t.Fatal("revoke --tenant")
	}
	mustRun(t, 0, "keys", "revoke", "k5", "--delete", "--policy", pol)
	if strings.Contains(mustRun(t, 0, "keys", "list", "--policy", pol), "k5") {
		t.Fatal("deleted key still listed")
	}
	mustRun(t, 1, "keys", "revoke", "--user", "nobody", "--policy", pol)
	mustRun(t, 2, "keys", "revoke", "--policy", pol)

	// expiring: only keys whose expiry falls in the window.
	mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "soon", "--expires", "3d")
	mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "later", "--expires", "90d")
	exp := mustRun(t, 0, "keys", "expiring", "--within", "14d", "--policy", pol)
	if !strings.Contains(exp, "soon") || strings.Contains(exp, "later") {
		t.Errorf("expiring:\n%s", exp)
	}

	// --keys works on the file alone.
	if !strings.Contains(mustRun(t, 0, "keys", "list", "--keys", keysFile, "--json"), `"id": "later"`) {
		t.Error("list --keys")
	}
	mustRun(t, 2, "keys", "list")
	mustRun(t, 2, "keys", "list", "--policy", pol, "--keys", keysFile)
}

// TestKeysLimit: a new key past the policy's key_limit is refused and the
// file stays as it was.
func TestKeysLimit(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "workspace-token", dir)
	pol := filepath.Join(dir, "policy.yaml")
	var b strings.Builder
	b.WriteString("version: 1\nkeys:\n")
	for i := range 200 {
		fmt.Fprintf(&b, "  - { id: t%d, sha256: %s, tenant: w, tier: service, created: 2026-11-01 }\n", i, keys.DigestOf(fmt.Sprint(i)).String())
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "keys", "new", "--policy", pol, "--tenant", "w")
	if code != 1 || !strings.Contains(errOut, "201 keys exceed the policy's key_limit of 200") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "keys.yaml")); string(after) != b.String() {
		t.Fatal("a refused change modified the keys file")
	}
	if code, _, _ := runCLI(t, "", "keys", "new", "--policy", pol, "--tenant", "w", "--prefix", "rime_", "--quiet"); code != 1 {
		t.Fatal("still refused with another prefix")
	}
}

// TestKeysConcurrentNew: two processes adding keys at once lose none.
func TestKeysConcurrentNew(t *testing.T) {
	bin := portcullisBinary(t)
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	pol := filepath.Join(dir, "policy.yaml")
	const each = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				out, err := exec.Command(bin, "keys", "new", "--policy", pol, "--tenant", "app", "--id", fmt.Sprintf("p%d-%d", p, i), "--quiet").CombinedOutput()
				if err != nil {
					errs <- fmt.Errorf("%v: %s", err, out)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var listed struct{ Keys []struct{ ID string } }
	if err := json.Unmarshal([]byte(mustRun(t, 0, "keys", "list", "--policy", pol, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if want := 2 + 2*each; len(listed.Keys) != want {
		t.Fatalf("%d keys, want %d: a concurrent write lost a key", len(listed.Keys), want)
	}
}

// TestKeysWithRunningServer: a running server picks up rotation (old and
// new values both valid during the overlap, only the new after) and
// revocation by its normal reload, and reports per-key usage.
func TestKeysWithRunningServer(t *testing.T) {
	demo := testkit.Load(t, "bearer-key")
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	pol := filepath.Join(dir, "policy.yaml")
	p := startServe(t, "--policy", pol)
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	req := func(key string) int {
		return status(t, c, checkReq("GET", "/api/x", map[string]string{"authorization": "Bearer " + key}))
	}
	old := demo.Key(t, "app")
	if req(old) != 200 {
		t.Fatal("app key")
	}
	fresh := strings.TrimSpace(mustRun(t, 0, "keys", "rotate", "app", "--overlap", "1h", "--policy", pol, "--quiet"))
	p.waitLog(t, msgIs("policy reloaded", "generation", 2))
	if req(old) != 200 || req(fresh) != 200 {
		t.Fatal("during the overlap both values must work")
	}
	mustRun(t, 0, "keys", "rotate", "app", "--finish", "--policy", pol)
	p.waitLog(t, msgIs("policy reloaded", "generation", 3))
	if req(old) != 401 || req(fresh) != 200 {
		t.Fatal("after the overlap only the new value works")
	}
	mustRun(t, 0, "keys", "revoke", "app", "--policy", pol)
	p.waitLog(t, msgIs("policy reloaded", "generation", 4))
	if req(fresh) != 401 {
		t.Fatal("revoked key still works")
	}

	// 4 allowed; 1 denied as revoked (the finished old value is an unknown key: no id to count).
	_, body := p.get(t, "/keys/usage")
	var u keys.Report
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	if len(u.Keys) != 1 || u.Keys[0].ID != "app" || u.Keys[0].Allowed != 4 || u.Keys[0].Denied != 1 || u.Keys[0].LastUsed == nil {
		t.Fatalf("usage %s", body)
	}
	list := mustRun(t, 0, "keys", "list", "--policy", pol, "--admin", p.adminAddr)
	if !strings.Contains(list, "LAST USED") || !strings.Contains(list, "app") {
		t.Fatalf("list --admin:\n%s", list)
	}
	if strings.Contains(body+list, old) || strings.Contains(body+list, fresh) {
		t.Fatal("a secret in the usage report")
	}
	p.signal(t, syscall.SIGTERM)
	p.waitExit(t)
}

// TestKeysOnKeyStore: with a policy naming a key store, portcullis db
// migrate applies the schema (twice is fine) and the keys commands work on
// the database: new, list, check (which consults the store), rotate with
// an overlap and --finish, revoke, expiring; keys import moves a keys
// file's digests into the store unchanged, all or nothing.
func TestKeysOnKeyStore(t *testing.T) {
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	t.Setenv("PORTCULLIS_DATABASE_URL", dsn)
	pol := selfService(t)
	mustRun(t, 0, "db", "migrate", "--policy", pol)
	if out := mustRun(t, 0, "db", "migrate", "--policy", pol); !strings.Contains(out, "key store schema at version 6") {
		t.Fatalf("second migrate: %s", out)
	}
	check := func(key string) int { return checkKeyAt(t, pol, "/v1/models", "authorization: Bearer ", key) }
	k1 := strings.TrimSpace(mustRun(t, 0, "keys", "new", "--policy", pol, "--user", "u-alice", "--tenant", "org-acme", "--id", "cli-1", "--label", "from the CLI", "--quiet"))
	if check(k1) != 200 {
		t.Fatal("a store key made by the CLI does not work")
	}
	mustRun(t, 1, "keys", "new", "--policy", pol, "--user", "u-alice", "--id", "cli-1")  // id taken
	mustRun(t, 1, "keys", "new", "--policy", pol, "--user", "u-alice", "--tier", "gold") // no such tier
	mustRun(t, 1, "keys", "new", "--policy", pol, "--tenant", "org-initech")             // no such tenant
	mustRun(t, 1, "keys", "new", "--policy", pol, "--superuser")                         // superusers stay in files
	list := mustRun(t, 0, "keys", "list", "--policy", pol, "--json")
	if !strings.Contains(list, `"id": "cli-1"`) || strings.Contains(list, k1) || strings.Contains(list, keys.DigestOf(k1).String()) {
		t.Fatalf("list:\n%s", list)
	}
	k2 := strings.TrimSpace(mustRun(t, 0, "keys", "rotate", "cli-1", "--overlap", "1h", "--policy", pol, "--quiet"))
	if check(k1) != 200 || check(k2) != 200 {
		t.Fatal("during the overlap both values must work")
	}
	mustRun(t, 0, "keys", "rotate", "cli-1", "--finish", "--policy", pol)
	if check(k1) != 401 || check(k2) != 200 {
		t.Fatal("after --finish only the new value may work")
	}
	mustRun(t, 0, "keys", "revoke", "cli-1", "--policy", pol)
	if check(k2) != 401 {
		t.Fatal("a revoked store key works")
	}
	mustRun(t, 1, "keys", "revoke", "--user", "nobody", "--policy", pol)
	if exp := mustRun(t, 0, "keys", "expiring", "--within", "400d", "--policy", pol); strings.Contains(exp, "cli-1") {
		t.Errorf("a disabled key is listed as expiring:\n%s", exp)
	}

	// Import: the ib-context example's keys, digests unchanged.
	ib := testkit.Load(t, "ib-context")
	mustRun(t, 0, "keys", "import", "--policy", pol, filepath.Join(ib.Dir, "keys.yaml"))
	if check(ib.Key(t, "alice")) != 200 || check(ib.Key(t, "bob")) != 200 {
		t.Fatal("imported keys do not work")
	}
	mustRun(t, 1, "keys", "import", "--policy", pol, filepath.Join(ib.Dir, "keys.yaml")) // all taken: nothing imported
	three := testkit.Load(t, "three-tiers")
	mustRun(t, 1, "keys", "import", "--policy", pol, filepath.Join(three.Dir, "keys.yaml")) // tenants unknown here
	mustRun(t, 2, "keys", "import", "--policy", pol)
}

// checkKeyAt runs `portcullis check` on pol with key and returns the status.
func checkKeyAt(t *testing.T, pol, path, header, key string) int {
	t.Helper()
	_, out, errOut := runCLI(t, "", "check", "--policy", pol, "--path", path, "-H", header+key)
	var r struct{ Status int }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	return r.Status
}
