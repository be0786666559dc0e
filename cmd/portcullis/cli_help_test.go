package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestCommandHelp: every command and keys subcommand answers --help (and
// -h) with its own usage on stdout and exit 0, nothing on stderr.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		usage string // the first line starts with it
		says  string // and the text holds this
	}{
		{[]string{"--help"}, "usage: portcullis <command>", "demo"},
		{[]string{"keys", "--help"}, "usage: portcullis keys COMMAND", "expiring"},
		{[]string{"keys", "new", "--help"}, "usage: portcullis keys new", "-expires"},
		{[]string{"keys", "rotate", "--help"}, "usage: portcullis keys rotate", "-overlap"},
		{[]string{"keys", "revoke", "--help"}, "usage: portcullis keys revoke", "-delete"},
		{[]string{"keys", "list", "--help"}, "usage: portcullis keys list", "-admin"},
		{[]string{"keys", "expiring", "--help"}, "usage: portcullis keys expiring", "-within"},
		{[]string{"keys", "hash", "--help"}, "usage: portcullis keys hash", "SHA-256"},
		{[]string{"keys", "import", "--help"}, "usage: portcullis keys import", "one\ntransaction"},
		{[]string{"db", "--help"}, "usage: portcullis db migrate", "-policy"},
		{[]string{"db", "migrate", "--help"}, "usage: portcullis db migrate", "-policy"},
		{[]string{"validate", "--help"}, "usage: portcullis validate FILE", "Exit 0 valid, 1 invalid"},
		{[]string{"check", "--help"}, "usage: portcullis check", "-method"},
		{[]string{"test", "--help"}, "usage: portcullis test", "-policy"},
		{[]string{"serve", "--help"}, "usage: portcullis serve", "-tls-cert"},
		{[]string{"demo", "--help"}, "usage: portcullis demo self-service", "-signin-addr"},
		{[]string{"demo", "self-service", "--help"}, "usage: portcullis demo self-service", "-keys-api-addr"},
	} {
		for _, h := range []string{"--help", "-h"} {
			args := append([]string(nil), tc.args...)
			args[len(args)-1] = h
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errOut := runCLI(t, "", args...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr %q; want 0 and the usage on stdout", code, errOut)
				}
				if !strings.HasPrefix(out, tc.usage) || !strings.Contains(out, tc.says) {
					t.Errorf("stdout does not start with %q and say %q:\n%s", tc.usage, tc.says, out)
				}
			})
		}
	}
	// A usage error still goes to stderr, with exit 2.
	for _, args := range [][]string{{"keys", "new", "--bogus"}, {"db"}, {"db", "grow"}, {"validate"}, {"keys", "hash", "extra"}, {"demo"}, {"demo", "other"}} {
		if code, out, errOut := runCLI(t, "", args...); code != 2 || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 with a message on stderr only", args, code, out, errOut)
		}
	}
}

// TestServeHelpTLS: serve --help says what the README says of TLS: it
// serves the gRPC listener and the key API listener, --client-ca requires
// client certificates there, the files are re-read.
func TestServeHelpTLS(t *testing.T) {
	_, out, _ := runCLI(t, "", "serve", "--help")
	flags := map[string]string{}
	var name string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  -") {
			name = strings.Fields(l)[0]
		} else if name != "" {
			flags[name] += strings.TrimSpace(l) + " "
		}
	}
	for flag, says := range map[string][]string{
		"-tls-cert":  {"gRPC listener", "key API listener", "re-read"},
		"-tls-key":   {"re-read"},
		"-client-ca": {"gRPC and key API listeners", "client certificates", "mTLS"},
	} {
		for _, s := range says {
			if !strings.Contains(flags[flag], s) {
				t.Errorf("%s: %q does not say %q", flag, flags[flag], s)
			}
		}
	}
	readme, err := os.ReadFile(filepath.Join(testkit.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "serve TLS on the gRPC listener and the key API listener") {
		t.Error("the README's TLS paragraph no longer says what serve --help says")
	}
}

// TestKeysRelativePolicy: `keys list --policy examples/X/policy.yaml`, a
// path relative to the working folder, works for every example with a
// keys file (the keys file's path was joined to the policy's folder twice),
// and so do the commands that change the file.
func TestKeysRelativePolicy(t *testing.T) {
	t.Chdir(testkit.Root())
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token", "platform"} {
		code, out, errOut := runCLI(t, "", "keys", "list", "--policy", filepath.Join("examples", ex, "policy.yaml"))
		if code != 0 || !strings.HasPrefix(out, "ID ") {
			t.Errorf("%s: exit %d\n%s%s", ex, code, out, errOut)
		}
	}
	dir := t.TempDir()
	copyExample(t, "bearer-key", filepath.Join(dir, "bearer-key"))
	t.Chdir(dir)
	pol := filepath.Join("bearer-key", "policy.yaml")
	mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "rel", "--quiet")
	mustRun(t, 0, "keys", "rotate", "rel", "--policy", pol, "--quiet")
	mustRun(t, 0, "keys", "revoke", "rel", "--policy", pol)
	if out := mustRun(t, 0, "keys", "list", "--policy", pol); !strings.Contains(out, "rel ") {
		t.Errorf("the new key is not listed:\n%s", out)
	}
	// A refused change names the keys file, never the temporary one.
	code, _, errOut := runCLI(t, "", "keys", "new", "--policy", pol, "--tenant", "app", "--id", "rel")
	if code != 1 || strings.Contains(errOut, ".tmp-") || !strings.Contains(errOut, filepath.Join("bearer-key", "keys.yaml")) {
		t.Errorf("a duplicate id: exit %d\n%s", code, errOut)
	}
}

// TestKeysSayDisabled: a revoked key is "disabled" in the CLI as in the
// API and on the token page, never "revoked".
func TestKeysSayDisabled(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "bearer-key", dir)
	pol := filepath.Join(dir, "policy.yaml")
	mustRun(t, 0, "keys", "new", "--policy", pol, "--tenant", "app", "--id", "ci", "--quiet")
	if out := mustRun(t, 0, "keys", "revoke", "ci", "--policy", pol); !strings.HasPrefix(out, "disabled 1 key(s): ci") {
		t.Errorf("revoke says %q", out)
	}
	var list struct {
		Keys []struct{ ID, State string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, 0, "keys", "list", "--policy", pol, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, k := range list.Keys {
		if k.ID == "ci" && k.State != "disabled" {
			t.Errorf("key ci: state %q, want disabled", k.State)
		}
	}
	table := mustRun(t, 0, "keys", "list", "--policy", pol)
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "ci ") && !strings.HasSuffix(strings.TrimSpace(l), "disabled") {
			t.Errorf("the table says %q", l)
		}
	}
}

// TestKeysMessagesNameTheFlag: a refused key names the flag the caller
// sent, and durations read as they were written (365d, 36h), never as Go
// prints them (8760h0m0s).
func TestKeysMessagesNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	b, _ := os.ReadFile(pol)
	if err := os.WriteFile(pol, append(b, []byte("\nkey_lifetime: 365d\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme", "--tier", "gold"}, 1, `--tier "gold": not a tier of the policy (tiers are: service, admin, superuser)`},
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme", "--expires", "2020-01-01"}, 1, "--expires 2020-01-01: that is not after now"},
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme", "--expires", "soon"}, 2, `--expires "soon"`},
		{[]string{"keys", "rotate", "acme", "--policy", pol, "--overlap", "1y"}, 2, "--overlap: "},
		{[]string{"keys", "expiring", "--policy", pol, "--within", "-1d"}, 2, "--within: "},
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme"}, 0, "(the policy's key_lifetime, 365d)"},
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme", "--expires", "36h"}, 0, "(--expires 36h)"},
		{[]string{"keys", "rotate", "acme", "--policy", pol, "--overlap", "36h"}, 0, "keeps working for 36h, until"},
	} {
		code, _, errOut := runCLI(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) || strings.Contains(errOut, "h0m0s") || strings.Contains(errOut, ".tmp-") {
			t.Errorf("%v: exit %d (want %d), stderr does not say %q:\n%s", tc.args[1:], code, tc.code, tc.says, errOut)
		}
	}
}

// TestTestReportsEveryProblem: `portcullis test` lists every problem of
// every test file at once, with the problems of their policies, as
// validate does; no case runs.
func TestTestReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol, _ := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	bad := strings.Replace(string(pol), "tier: service }", "tier: servce }", 1)
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	one := `policy: broken.yaml
tests:
  - name: a case
    request: { path: /images, colour: blue }
    expect: { reason: no_such_reason }
  - request: { method: GET }
`
	two := `policy: policy.yaml
tests:
  - name: twice
    request: { path: /a, headers: { x-api-key: "key:acme" } }
  - name: twice
    request: { path: /b }
`
	for name, body := range map[string]string{"one_test.yaml": one, "two_test.yaml": two} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "", "test", filepath.Join(dir, "one_test.yaml"), filepath.Join(dir, "two_test.yaml"))
	if code != 2 || out != "" {
		t.Fatalf("exit %d, stdout %q; want 2 and no case run", code, out)
	}
	for _, want := range []string{
		`one_test.yaml:4: unknown field "colour"`,         // a field that does not decode
		"one_test.yaml:5: tests[0].expect.reason",         // and the rest is still checked
		"one_test.yaml:6: tests[1].name: required",        //
		"one_test.yaml:6: tests[1].request.path",          //
		"broken.yaml:",                                    // its policy's problem too
		`unknown tier "servce"`,                           //
		`two_test.yaml:5: tests[1].name: "twice" names`,   // and the second file's
		"two_test.yaml:4: tests[0].request.headers.x-api", // placeholder without credentials
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestOutputFailures: a command whose output cannot be written (a full
// disk: /dev/full) or encoded exits non-zero with the reason on stderr,
// never 0 with nothing printed (RT2-02). The real binary, as a script runs
// it.
func TestOutputFailures(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full on this system: %v", err)
	}
	defer full.Close()
	demo := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	test := filepath.Join(testkit.Example("three-tiers"), "policy_test.yaml")
	for _, tc := range []struct {
		args  []string
		stdin string
		says  string
	}{
		{[]string{"check", "--policy", demo.Policy(), "--path", "/images", "-H", "x-api-key: " + demo.Key(t, "acme")}, "", "no space left"},
		{[]string{"check", "--policy", demo.Policy(), "--path", "/images"}, "", "no space left"}, // denied: 3 is not enough
		{[]string{"validate", demo.Policy()}, "", "no space left"},
		{[]string{"test", test}, "", "no space left"},
		{[]string{"keys", "list", "--policy", demo.Policy()}, "", "no space left"},
		{[]string{"keys", "list", "--policy", demo.Policy(), "--json"}, "", "no space left"},
		{[]string{"keys", "expiring", "--policy", demo.Policy(), "--within", "10000d", "--json"}, "", "no space left"},
		{[]string{"keys", "hash"}, "secret", "no space left"},
		{[]string{"version"}, "", "no space left"},
		{[]string{"--help"}, "", "no space left"},
		{[]string{"keys", "new", "--policy", pol, "--tenant", "acme", "--id", "lost"}, "", "revoke it (portcullis keys revoke lost --policy " + pol},
	} {
		cmd := exec.Command(binPath, tc.args...)
		cmd.Stdin = strings.NewReader(tc.stdin)
		cmd.Stdout = full
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 || ee.ExitCode() == 3 || !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("%v with a full stdout: %v, stderr %q; want an error exit saying %q", tc.args, err, stderr.String(), tc.says)
		}
	}

	// A time JSON cannot hold: created + key_lifetime past the year 9999.
	b, _ := os.ReadFile(pol)
	if err := os.WriteFile(pol, append(b, []byte("\nkey_lifetime: 2d\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "keys.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("  - { id: far, sha256: " + strings.Repeat("ab", 32) + ", tenant: acme, tier: service, created: 9999-12-30 }\n")
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "keys", "list", "--policy", pol, "--json")
	if code == 0 || out != "" || !strings.Contains(errOut, "key far: expires 10000-01-01") || !strings.Contains(errOut, "0-9999") {
		t.Errorf("keys list --json with an expiry past 9999: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "", "keys", "list", "--policy", pol); code != 0 || !strings.Contains(out, "acme") {
		t.Errorf("the table has no such limit: exit %d\n%s", code, out)
	}
}

// TestKeysListAdminWithKeyStore: --admin with a key-store policy says why
// one server's counts cannot be those keys' usage, instead of zeros.
func TestKeysListAdminWithKeyStore(t *testing.T) {
	t.Setenv("PORTCULLIS_DATABASE_URL", "")
	code, out, errOut := runCLI(t, "", "keys", "list", "--policy", filepath.Join(testkit.Example("self-service"), "policy.yaml"),
		"--admin", "127.0.0.1:1")
	if code != 2 || out != "" || !strings.Contains(errOut, "GET /v1/keys/{id}/usage") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
