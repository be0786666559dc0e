package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
)

// runCLI runs one command line in-process.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// checkCase is one `portcullis check` call against an example; header
// values "key:<id>" and "token:<name>" become demo credentials.
type checkCase struct {
	example string
	method  string
	path    string
	headers []string
	code    int
	want    map[string]any // fields of the JSON output
}

func TestCheckExamples(t *testing.T) {
	acme := "x-api-key: key:acme"
	cases := []checkCase{
		{"three-tiers", "GET", "/images", []string{acme, "Authorization: None", "x-tenant-id: globex"}, 0,
			map[string]any{"allow": true, "status": 200, "reason": "allowed", "tier": "service", "tenant": "acme",
				"tenant_kind": "organization", "user": "", "credential": "acme"}},
		{"three-tiers", "POST", "/images", []string{acme, "Authorization: None"}, 3,
			map[string]any{"allow": false, "status": 403, "tier": "service", "credential": "acme"}},
		{"three-tiers", "POST", "/images", []string{acme, "Authorization: Bearer token:alice-access"}, 0,
			map[string]any{"tier": "admin", "tenant": "acme", "user": "alice@acme.com"}},
		{"three-tiers", "POST", "/images", []string{acme, "Authorization: token:alice-id"}, 0,
			map[string]any{"tier": "admin", "tenant": "acme"}},
		{"three-tiers", "POST", "/images", []string{acme, "Authorization: Bearer token:alice-noscope"}, 3,
			map[string]any{"status": 403, "tier": "service"}},
		{"three-tiers", "GET", "/images", []string{"x-api-key: key:globex", "Authorization: Bearer token:alice-access"}, 3,
			map[string]any{"status": 403}},
		{"three-tiers", "GET", "/images", []string{"Authorization: None"}, 3,
			map[string]any{"status": 401, "tier": "", "reason": "missing_credential"}},
		{"three-tiers", "GET", "/predictors", []string{"x-api-key: key:root", "Authorization: Bearer token:root-access", "X-Selected-Customer: acme"}, 0,
			map[string]any{"tier": "superuser", "tenant": "acme", "tenant_kind": "organization"}},
		{"three-tiers", "GET", "/images", []string{acme, "x-selected-customer: acme"}, 3,
			map[string]any{"status": 403}},
		{"three-tiers", "GET", "/predictors", []string{"x-api-key: key:root", "Authorization: Bearer token:root-access", "x-selected-customer: nobody"}, 3,
			map[string]any{"status": 403}},
		// Repeated headers join with "," as in Envoy: one invalid key.
		{"three-tiers", "GET", "/images", []string{acme, acme}, 3, map[string]any{"status": 401}},
		{"three-tiers", "GET", "/images/../predictors", []string{acme}, 3, map[string]any{"status": 400}},
		{"ib-context", "GET", "/v1/models", []string{"Authorization: Bearer key:alice"}, 0,
			map[string]any{"tenant": "u-alice", "tenant_kind": "personal", "user": "u-alice", "tier": "admin"}},
		{"ib-context", "GET", "/v1/models", []string{"Authorization: Bearer key:alice", "IB-Context: org-acme"}, 0,
			map[string]any{"tenant": "org-acme", "tenant_kind": "organization"}},
		{"ib-context", "GET", "/v1/models", []string{"Authorization: Bearer key:bob", "IB-Context: org-acme"}, 3,
			map[string]any{"status": 403}},
		{"ib-context", "POST", "/v1/models", []string{"Authorization: Bearer key:bob"}, 3, map[string]any{"status": 403}},
		{"requester-uid", "POST", "/v1/models", []string{"Authorization: Bearer key:alice", "Instill-Requester-Uid: org-globex"}, 0,
			map[string]any{"tenant": "org-globex", "tenant_kind": "organization"}},
		{"requester-uid", "GET", "/v1/models", []string{"Authorization: Bearer key:bob", "Instill-Requester-Uid: org-globex"}, 3,
			map[string]any{"status": 403}},
		{"bearer-key", "GET", "/api/x", []string{"authorization: BEARER key:app"}, 0, map[string]any{"tenant": "app"}},
		{"bearer-key", "GET", "/api/x", []string{"authorization: Bearer key:revoked"}, 3, map[string]any{"status": 401}},
		{"workspace-token", "GET", "/v1/x", []string{"rime-api-key: key:ws1-alice"}, 0,
			map[string]any{"tenant": "workspace-1", "user": "alice", "credential": "ws1-alice"}},
		{"workspace-token", "GET", "/v1/x", []string{"rime-api-key: key:expired"}, 3, map[string]any{"status": 401}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s %s %v", tc.example, tc.method, tc.path, tc.headers), func(t *testing.T) {
			demo := testkit.Load(t, tc.example)
			args := []string{"check", "--policy", demo.Policy(), "--method", tc.method, "--path", tc.path}
			for _, h := range tc.headers {
				name, v, _ := strings.Cut(h, ": ")
				args = append(args, "-H", name+": "+demo.Expand(t, v))
			}
			code, out, errOut := runCLI(t, "", args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			got := decodeCheck(t, out)
			for k, v := range tc.want {
				if fmt.Sprint(got[k]) != fmt.Sprint(v) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			sets, _ := got["set_headers"].(map[string]any)
			removes, _ := got["remove_headers"].([]any)
			if got["allow"] == true {
				if sets["x-tenant-id"] != got["tenant"] && got["tenant"] != "" {
					t.Errorf("x-tenant-id = %v, tenant %v", sets["x-tenant-id"], got["tenant"])
				}
				for _, r := range removes {
					if _, both := sets[r.(string)]; both {
						t.Errorf("%v both set and removed", r)
					}
				}
			} else if len(sets) != 0 || len(removes) != 0 {
				t.Errorf("deny with headers: %v %v", sets, removes)
			}
		})
	}
}

// decodeCheck parses check's output and asserts it has exactly the
// contract's fields.
func decodeCheck(t *testing.T, out string) map[string]any {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	fields := []string{"allow", "status", "reason", "tier", "tenant", "tenant_kind", "user", "credential", "set_headers", "remove_headers"}
	if len(got) != len(fields) {
		t.Errorf("fields %v, want exactly %v", got, fields)
	}
	for _, f := range fields {
		if _, ok := got[f]; !ok {
			t.Errorf("missing field %q", f)
		}
	}
	return got
}

func TestCheckUsage(t *testing.T) {
	pol := filepath.Join(testkit.Example("three-tiers"), "policy.yaml")
	for _, args := range [][]string{
		{"check"},
		{"check", "--policy", pol},
		{"check", "--path", "/x"},
		{"check", "--policy", pol, "--path", "/x", "-H", "no-colon"},
		{"check", "--policy", pol, "--path", "/x", "--bogus"},
		{"check", "--policy", "/nonexistent.yaml", "--path", "/x"},
		{"nonsense"},
		{},
	} {
		if code, _, errOut := runCLI(t, "", args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token"} {
		if code, _, errOut := runCLI(t, "", "validate", filepath.Join(testkit.Example(ex), "policy.yaml")); code != 0 {
			t.Errorf("%s: exit %d: %s", ex, code, errOut)
		}
	}
	if code, _, _ := runCLI(t, "", "validate"); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
	if code, _, _ := runCLI(t, "", "validate", "/nonexistent/policy.yaml"); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}

	// The workspace-token example with 201 tokens fails validation.
	dir := t.TempDir()
	src := testkit.Example("workspace-token")
	pol, _ := os.ReadFile(filepath.Join(src, "policy.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), pol, 0o644); err != nil {
		t.Fatal(err)
	}
	var keys strings.Builder
	keys.WriteString("version: 1\nkeys:\n")
	for i := range 201 {
		sum := sha256.Sum256([]byte(fmt.Sprint("token-", i)))
		fmt.Fprintf(&keys, "  - { id: t%d, sha256: %s, tenant: workspace-1, user: alice, tier: service, created: 2026-11-01 }\n", i, hex.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte(keys.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "validate", filepath.Join(dir, "policy.yaml"))
	if code != 1 || !strings.Contains(errOut, "keys.yaml:2: keys: 201 keys exceed the policy's key_limit of 200") {
		t.Fatalf("201 tokens: exit %d\n%s", code, errOut)
	}
	// Every problem is listed, each with file and line.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("version: 1\ncredentials: { api_key: { headers: [x-api-key] } }\ntiers: { service: { requires_any: [ { key: any } ] } }\nroutes:\n  - { prefix: /a, tier: gold }\n  - { prefix: /b, tier: silver }\n"), 0o644)
	code, _, errOut = runCLI(t, "", "validate", bad)
	if code != 1 || !strings.Contains(errOut, "bad.yaml:5: routes[0].tier") || !strings.Contains(errOut, "bad.yaml:6: routes[1].tier") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}

func TestKeysHash(t *testing.T) {
	code, out, _ := runCLI(t, "secret\n", "keys", "hash")
	sum := sha256.Sum256([]byte("secret"))
	if code != 0 || strings.TrimSpace(out) != hex.EncodeToString(sum[:]) {
		t.Fatalf("exit %d out %q", code, out)
	}
	if code, _, _ := runCLI(t, "", "keys", "hash"); code != 2 {
		t.Fatalf("empty stdin: exit %d", code)
	}
}

// TestBinaryExitCodes builds the real binary and checks the exit statuses
// a script sees.
func TestBinaryExitCodes(t *testing.T) {
	bin := binPath // TestMain's build: a second one would only cost time
	demo := testkit.Load(t, "three-tiers")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"check", "--policy", demo.Policy(), "--path", "/images", "-H", "x-api-key: " + demo.Key(t, "acme")}, 0},
		{[]string{"check", "--policy", demo.Policy(), "--path", "/images"}, 3},
		{[]string{"check", "--path", "/images"}, 2},
		{[]string{"validate", demo.Policy()}, 0},
		{[]string{"version"}, 0},
	} {
		cmd := exec.Command(bin, tc.args...)
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args[0], code, tc.code, out)
		}
	}
}

// TestKeysNew: a new key is printed once, and its entry, added to a keys
// file, makes the key work.
func TestKeysNew(t *testing.T) {
	code, out, errOut := runCLI(t, "", "keys", "new", "--tenant", "app", "--id", "ci-bot", "--label", "ci bot", "--expires", "30d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key, entry := lines[0], lines[len(lines)-1]
	if !strings.HasPrefix(key, "pk_live_") || len(key) != len("pk_live_")+43+6 || !keys.WellFormed(key) { // 43 base62 and a checksum
		t.Fatalf("key %q", key)
	}
	if strings.Count(out, key) != 1 || strings.Contains(entry, key) {
		t.Fatal("the key must appear exactly once, and never in the entry")
	}
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	f, err := os.OpenFile(filepath.Join(dir, "keys.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(entry + "\n")
	_ = f.Close()
	code, out, errOut = runCLI(t, "", "check", "--policy", filepath.Join(dir, "policy.yaml"), "--path", "/api/x", "-H", "authorization: Bearer "+key)
	if code != 0 || !strings.Contains(out, `"credential": "ci-bot"`) {
		t.Fatalf("new key: exit %d\n%s%s", code, out, errOut)
	}

	code, out, _ = runCLI(t, "", "keys", "new", "--user", "u-1", "--quiet")
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "pk_live_") {
		t.Fatalf("--quiet printed %q", out)
	}
	for _, args := range [][]string{{"keys", "new"}, {"keys", "new", "--tenant", "a", "--expires", "soon"}, {"keys"}, {"keys", "burn"}} {
		if code, _, _ := runCLI(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
