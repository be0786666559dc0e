// Package scripts_test checks the repository's scripts by running them.
package scripts_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFuzzScriptReportsAFinding: when the engine breaks a target,
// scripts/fuzz.sh prints go test's whole report, the failing input with
// its content, and a command that replays it (which does fail the same
// way); the input stays in the tree; the other targets still run; the
// exit status is 1. The targets are scripts/testdata/fuzzfail's.
func TestFuzzScriptReportsAFinding(t *testing.T) {
	corpus := filepath.Join("testdata", "fuzzfail", "testdata", "fuzz", "FuzzFail")
	t.Cleanup(func() { os.RemoveAll(filepath.Join("testdata", "fuzzfail", "testdata")) })
	cmd := exec.Command("./fuzz.sh", "./scripts/testdata/fuzzfail", "FuzzFail", "./scripts/testdata/fuzzfail", "FuzzPass")
	cmd.Env = append(os.Environ(), "FUZZTIME=3s")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("fuzz.sh: %v, want exit 1\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range []string{
		"fuzz FuzzFail (./scripts/testdata/fuzzfail) FAILED; go test's whole report:",
		"--- FAIL: FuzzFail",
		"the engine found",                                   // the target's own message
		"Failing input written to testdata/",                 // go test's report, not its last three lines
		"fuzz FuzzPass (./scripts/testdata/fuzzfail) for 3s", // the next target still ran
		"fuzz: 1 of 2 targets failed: FuzzFail",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	m := regexp.MustCompile(`failing input (\S+) \(kept`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no failing input named:\n%s", report)
	}
	input, err := os.ReadFile(filepath.Join("..", m[1]))
	if err != nil {
		t.Fatalf("the failing input is not in the tree: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(input)), "\n") {
		if !strings.Contains(report, "    "+line+"\n") {
			t.Errorf("the report does not show the input's line %q:\n%s", line, report)
		}
	}
	if files, _ := os.ReadDir(corpus); len(files) != 1 {
		t.Errorf("%d inputs under %s, want the one found", len(files), corpus)
	}
	replay := regexp.MustCompile(`replay it: go test -run '([^']+)' (\S+)`).FindStringSubmatch(report)
	if replay == nil {
		t.Fatalf("no replay command:\n%s", report)
	}
	rerun := exec.Command("go", "test", "-count=1", "-run", replay[1], replay[2])
	rerun.Dir = ".."
	if b, err := rerun.CombinedOutput(); err == nil || !strings.Contains(string(b), "the engine found") {
		t.Errorf("the replay command does not fail on the input: %v\n%s", err, b)
	}
}

// TestFuzzScriptUsage: an odd number of arguments is a usage error.
func TestFuzzScriptUsage(t *testing.T) {
	out, err := exec.Command("./fuzz.sh", "./policy").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage: scripts/fuzz.sh") {
		t.Errorf("fuzz.sh ./policy: %v\n%s", err, out)
	}
}
