package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestCreditsByConvention: for each context convention, the wallet that
// pays is exactly the tenant the check resolved (testdata/credits: a
// metered copy of the convention's example and its policy test cases),
// and `portcullis test` asserts cost and wallet offline.
func TestCreditsByConvention(t *testing.T) {
	for _, name := range []string{"ib-context", "requester-uid", "three-tiers", "workspace-token"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyExample(t, name, dir)
			src := filepath.Join(testkit.Root(), "testdata", "credits")
			block, err := os.ReadFile(filepath.Join(src, name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			pol, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), append(append(pol, '\n'), block...), 0o644); err != nil {
				t.Fatal(err)
			}
			cases, err := os.ReadFile(filepath.Join(src, name+"_test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "credits_test.yaml"), cases, 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runBinary(t, dir, "test", "credits_test.yaml")
			n := strings.Count(string(cases), "  - name: ")
			if code != 0 || strings.Count(out, "PASS ") != n {
				t.Fatalf("exit %d, want %d cases passed:\n%s\n%s", code, n, out, errOut)
			}
		})
	}
}
