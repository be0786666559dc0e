package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestTenantsImport: `portcullis tenants import` copies the policy's
// tenants, aliases and members with their roles into the store, and again
// changes nothing; a replica serving the policy without those tenants then
// decides from the store exactly as it did from the policy.
func TestTenantsImport(t *testing.T) {
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	t.Setenv("PORTCULLIS_DATABASE_URL", dsn)
	pol := selfService(t)
	editFile(t, pol, "org-globex: { members: [u-bob] }", "org-globex: { aliases: [globex], members: [u-bob] }")
	out := mustRun(t, 0, "tenants", "import", "--policy", pol)
	if !strings.Contains(out, "org-acme: created; members: 2 added, 0 removed, 0 changed") || !strings.Contains(out, "org-globex: created; members: 1 added") {
		t.Fatalf("first import:\n%s", out)
	}
	out = mustRun(t, 0, "tenants", "import", "--policy", pol)
	if !strings.Contains(out, "org-acme: updated; members: 0 added, 0 removed, 0 changed") {
		t.Fatalf("second import:\n%s", out)
	}
	if code, _, errOut := runCLI(t, "", "tenants", "import"); code != 2 || !strings.Contains(errOut, "usage: portcullis tenants import") {
		t.Errorf("no policy: exit %d %s", code, errOut)
	}

	// The policy without its tenants: the store's serve the same checks.
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "tenants:\n"), strings.Index(text, "directory:\n")
	moved := filepath.Join(filepath.Dir(pol), "moved.yaml")
	writeFile(t, moved, text[:start]+text[end:])
	r := startReplica(t, moved, dsn)
	r.waitFor(t, msgIs("key store loaded"))
	status, k := r.api(t, "carol-admin", "POST", "/v1/keys", map[string]any{"label": "acme", "tier": "admin", "tenant": "org-acme"})
	if status != 201 {
		t.Fatalf("carol's key for org-acme from the store: %d %v", status, k)
	}
	r.applied(t, k["version"].(float64))
	if s, why, tenant, tier := r.checkFull(t, "POST", k["key"].(string), ""); s != 200 || tenant != "org-acme" || tier != "admin" {
		t.Fatalf("carol's key: %d %s %q %q", s, why, tenant, tier)
	}
	if s, why, tenant, _ := r.checkFull(t, "GET", k["key"].(string), "globex"); s != 403 || why != "tenant_not_allowed" || tenant != "" {
		t.Fatalf("carol's key for globex: %d %s", s, why)
	}
	if status, u := r.api(t, "console", "GET", "/v1/users/u-carol", nil); status != 200 || !strings.Contains(strings.ReplaceAll(strings.ReplaceAll(toJSON(u), " ", ""), "\n", ""), `{"id":"org-acme","role":"admin"}`) {
		t.Fatalf("carol in the store: %d %v", status, u)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
