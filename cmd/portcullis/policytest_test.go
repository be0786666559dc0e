package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// runBinary runs the real binary with args in dir and returns its exit
// status and output.
func runBinary(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(portcullisBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORTCULLIS_DATABASE_URL=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// TestEveryExampleHasPassingPolicyTests: every example's policy ships a
// policy_test.yaml, and `portcullis test` passes every case of it: one
// PASS line per case, then the summary, exit 0.
func TestEveryExampleHasPassingPolicyTests(t *testing.T) {
	policies, _ := filepath.Glob(filepath.Join(testkit.Root(), "examples", "*", "policy.yaml"))
	if len(policies) < 6 {
		t.Fatalf("found %d example policies", len(policies))
	}
	for _, pol := range policies {
		dir := filepath.Dir(pol)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "policy_test.yaml"))
			if err != nil {
				t.Fatalf("the example has no policy tests: %v", err)
			}
			cases := len(regexp.MustCompile(`(?m)^  - name: `).FindAll(raw, -1))
			code, out, errOut := runBinary(t, dir, "test", "policy_test.yaml")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != 0 || len(lines) != cases+1 || lines[cases] != fmt.Sprintf("%d passed, 0 failed", cases) {
				t.Fatalf("exit %d, %d cases:\n%s%s", code, cases, out, errOut)
			}
			for _, l := range lines[:cases] {
				if !strings.HasPrefix(l, "PASS ") {
					t.Errorf("not a PASS line: %q", l)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyTestReportsFailures: a failing case prints FAIL with each
// field that differs, then the decision as check prints it; the summary
// counts both; exit 1. Time-shifted tokens decide as their times say.
func TestPolicyTestReportsFailures(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	writeFile(t, filepath.Join(dir, "t.yaml"), `policy: policy.yaml
credentials: demo-credentials.json
tests:
  - name: expects admin from a key alone
    request: { method: POST, path: /images, headers: { x-api-key: "key:acme", authorization: None } }
    expect: { allow: true, tier: admin, set_headers: { x-tenant-id: globex }, remove_headers: [x-foo] }
  - name: an expired token
    request: { path: /images, headers: { x-api-key: "key:acme", authorization: "Bearer token:alice-access@-2h" } }
    expect: { status: 401, reason: token_expired }
  - name: a token valid in an hour
    request: { path: /images, headers: { x-api-key: "key:acme", authorization: "Bearer token:alice-access@+1h" } }
    expect: { status: 401, reason: token_not_yet_valid }
  - name: a token valid now
    request: { method: POST, path: /images, headers: { x-api-key: "key:acme", authorization: "Bearer token:alice-access" } }
    expect: { allow: true, tier: admin, user: alice@acme.com }
`)
	code, out, _ := runBinary(t, dir, "test", "t.yaml")
	want := `FAIL expects admin from a key alone: allow want true got false; tier want "admin" got "service"; ` +
		`set_headers.x-tenant-id want "globex" got not set; remove_headers want "x-foo" among them got []
{
  "allow": false,
  "status": 403,
  "reason": "tier_too_low",
  "tier": "service",
  "tenant": "",
  "tenant_kind": "",
  "user": "",
  "credential": "acme",
  "set_headers": {},
  "remove_headers": []
}
PASS an expired token
PASS a token valid in an hour
PASS a token valid now
3 passed, 1 failed
`
	if code != 1 || out != want {
		t.Fatalf("exit %d:\n%s\nwant exit 1:\n%s", code, out, want)
	}
	// --policy overrides the file's own: against bearer-key every case fails.
	code, out, _ = runBinary(t, dir, "test", "--policy", filepath.Join(testkit.Example("bearer-key"), "policy.yaml"), "t.yaml")
	if code != 1 || !strings.HasSuffix(out, "0 passed, 4 failed\n") {
		t.Fatalf("--policy: exit %d\n%s", code, out)
	}
}

// TestPolicyTestFileErrors: a broken test file is exit 2 with the file,
// the line and what to do, and no case runs.
func TestPolicyTestFileErrors(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	head := "policy: policy.yaml\ncredentials: demo-credentials.json\ntests:\n"
	for _, tc := range []struct{ name, file, want string }{
		{"unknown field", head + "  - name: a\n    request: { path: /images }\n    expct: {}\n", `t.yaml:6: unknown field "expct"`},
		{"no policy", "tests:\n  - name: a\n    request: { path: /images }\n", "t.yaml:1: policy: required"},
		{"no tests", "policy: policy.yaml\ntests: []\n", "tests: no tests"},
		{"no name", head + "  - request: { path: /images }\n", "t.yaml:4: tests[0].name: required"},
		{"two names alike", head + "  - name: a\n    request: { path: /x }\n  - name: a\n    request: { path: /y }\n", `tests[1].name: "a" names another case too`},
		{"no path", head + "  - name: a\n    request: { method: GET }\n", "tests[0].request.path: required"},
		{"unknown key", head + "  - name: a\n    request: { path: /x, headers: { x-api-key: \"key:initech\" } }\n", `has no key "initech" (it has acme, globex, root)`},
		{"unknown token", head + "  - name: a\n    request: { path: /x, headers: { authorization: \"token:eve\" } }\n", `has no token "eve"`},
		{"bad time shift", head + "  - name: a\n    request: { path: /x, headers: { authorization: \"token:alice-id@2h\" } }\n", "want @-<duration>"},
		{"placeholder without credentials", "policy: policy.yaml\ntests:\n  - name: a\n    request: { path: /x, headers: { x-api-key: \"key:acme\" } }\n",
			"is a placeholder: name the demo credentials file"},
		{"contradiction", head + "  - name: a\n    request: { path: /x }\n    expect: { allow: true, reason: no_route }\n", "contradict each other"},
		{"invalid policy", "policy: keys.yaml\ntests:\n  - name: a\n    request: { path: /x }\n", "the policy is invalid"},
		{"unknown reason", head + "  - name: a\n    request: { path: /x }\n    expect: { reason: forbidden }\n", `tests[0].expect.reason: unknown reason "forbidden" (want one of allowed,`},
		{"status and reason", head + "  - name: a\n    request: { path: /x }\n    expect: { status: 401, reason: no_route }\n", `status 401 and reason "no_route" contradict each other (no_route is 403)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "t.yaml"), tc.file)
			code, out, errOut := runBinary(t, dir, "test", "t.yaml")
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", code, out, errOut, tc.want)
			}
		})
	}
	if code, _, errOut := runBinary(t, dir, "test"); code != 2 || !strings.Contains(errOut, "usage: portcullis test") {
		t.Fatalf("no file: exit %d %s", code, errOut)
	}
}

// TestPolicyTestOfTheNextPolicy: the platform example's tests, run against
// its next policy (the one to shadow first), show exactly the case it
// changes: a write key may no longer delete.
func TestPolicyTestOfTheNextPolicy(t *testing.T) {
	dir := testkit.Example("platform")
	code, out, errOut := runBinary(t, dir, "test", "--policy", "policy.next.yaml", "policy_test.yaml")
	var failed []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL ") {
			failed = append(failed, l)
		}
	}
	if code != 1 || len(failed) != 1 || failed[0] != "FAIL a write key deletes: allow want true got false" || !strings.HasSuffix(out, "10 passed, 1 failed\n") {
		t.Fatalf("exit %d, failures %q\n%s%s", code, failed, out, errOut)
	}
}
