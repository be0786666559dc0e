package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

// schemathesis finds the schemathesis CLI scripts/install-deps.sh installs
// (pinned, in .tools/venv). Missing under CI is a failure; elsewhere the
// test is skipped.
func schemathesis(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testkit.Root(), ".tools", "bin", "schemathesis")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("schemathesis is not installed: scripts/install-deps.sh installs it")
	}
	t.Skip("schemathesis not installed (scripts/install-deps.sh installs it)")
	return ""
}

// TestKeyAPIAgainstItsOpenAPIDocument runs a peer's tool, schemathesis,
// against the served /v1/openapi.json of a real replica on a real
// PostgreSQL: every operation, with generated valid and invalid requests,
// then stateful sequences along the document's links (create, then get,
// change, refresh, delete the key it made), as the platform's management
// token and as a self-service user. Every answer must match the document
// (status, content type, headers, body schema), none may be a 5xx, a
// request the document forbids must be refused, an undeclared method is a
// 405 with Allow, a deleted key stays gone, a created one can be read, and
// a call without the credential is refused.
// It runs with a fixed seed, so a failure replays.
func TestKeyAPIAgainstItsOpenAPIDocument(t *testing.T) {
	st := schemathesis(t)
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	r := startReplica(t, selfService(t), dsn)
	r.waitFor(t, msgIs("key store loaded"))
	// Some keys to read and change besides those the run makes.
	for _, who := range []string{"alice", "bob", "carol-admin"} {
		if status, body := r.api(t, who, "POST", "/v1/keys", map[string]any{"label": "seed", "tier": "service"}); status != 201 {
			t.Fatalf("seed key: %d %v", status, body)
		}
	}
	for _, who := range []string{"console", "alice"} {
		t.Run(who, func(t *testing.T) {
			token := r.demo.ManagementTokens[who]
			if token == "" {
				token = r.demo.Token(t, who, time.Now(), time.Hour, nil)
			}
			dir := t.TempDir()
			// Every check but positive_data_acceptance: the document cannot say
			// which tiers and tenants the policy holds, or that an expiry
			// must lie ahead, so schema-valid bodies may rightly be a 400.
			// One worker: with two, CPython 3.11's ast (hypothesis describing a
			// strategy) now and then failed with "AST constructor recursion
			// depth mismatch", a runtime error of the tool's, not a finding;
			// one worker takes no longer here.
			cmd := exec.Command(st, "run", "http://"+r.keysAPIAddr+"/v1/openapi.json",
				"--checks", "all", "--exclude-checks", "positive_data_acceptance",
				"--header", "Authorization: Bearer "+token,
				"--phases", "examples,coverage,fuzzing,stateful",
				"--max-examples", "30", "--seed", "20261207", "--workers", "1",
				"--request-timeout", "20", "--no-color", "--warnings", "off",
				"--report", "junit", "--report-dir", dir)
			cmd.Env = append(os.Environ(), "SCHEMATHESIS_HOOKS=", "NO_COLOR=1")
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			text := strings.ReplaceAll(out.String(), token, "<token>")
			if err != nil {
				t.Fatalf("schemathesis found answers that do not match the document (exit %v):\n%s", err, text)
			}
			t.Logf("schemathesis as %s:\n%s", who, lastLines(text, 12))
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
