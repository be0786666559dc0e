package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

// checkAs asks r whether key may GET /v1/models with the given ib-context
// ("" for none), and returns the status, reason and tenant header.
func (r *replica) checkAs(t *testing.T, key, ibContext string) (int, string, string) {
	t.Helper()
	h := map[string]string{"authorization": "Bearer " + key}
	if ibContext != "" {
		h["ib-context"] = ibContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := r.c.Check(ctx, checkReq("GET", "/v1/models", h))
	if err != nil {
		t.Fatal(err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		for _, hv := range ok.GetHeaders() {
			if hv.GetHeader().GetKey() == "x-tenant-id" {
				return 200, "allowed", hv.GetHeader().GetValue()
			}
		}
		return 200, "allowed", ""
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), resp.GetStatus().GetMessage(), ""
}

// TestKeyStoreMembershipIsLive (RT2-01, as reported): alice makes a key for
// org-acme through the API; it acts for org-acme on both replicas. The
// policy is replaced so that org-acme's members are [u-carol]: once each
// replica logs the reload, the key is 403 tenant_not_allowed on both, with
// or without ib-context, and neither alice nor the platform may refresh it.
// Her personal key is unaffected. Putting her back restores the same key,
// same value.
func TestKeyStoreMembershipIsLive(t *testing.T) {
	dsn := testkit.SharedPostgreSQL(t).Database(t)
	pol := selfService(t)
	a := startReplica(t, pol, dsn)
	b := startReplica(t, pol, dsn)
	status, k := a.api(t, "alice", "POST", "/v1/keys", map[string]any{"label": "org-admin-key", "tier": "admin", "tenant": "org-acme"})
	if status != 201 {
		t.Fatalf("create: %d %v", status, k)
	}
	orgKey, id := k["key"].(string), k["id"].(string)
	status, p := a.api(t, "alice", "POST", "/v1/keys", map[string]any{"label": "personal", "tier": "service"})
	if status != 201 {
		t.Fatalf("create: %d %v", status, p)
	}
	personal := p["key"].(string)
	for _, r := range []*replica{a, b} {
		r.applied(t, p["version"].(float64))
		for _, ctx := range []string{"", "org-acme"} {
			if got, why, tenant := r.checkAs(t, orgKey, ctx); got != 200 || tenant != "org-acme" {
				t.Fatalf("before: ib-context %q: %d %s %q", ctx, got, why, tenant)
			}
		}
	}

	setMembers := func(from, to string) {
		t.Helper()
		text, err := os.ReadFile(pol)
		if err != nil || !strings.Contains(string(text), from) {
			t.Fatalf("policy lacks %q", from)
		}
		writeAtomic(t, pol, []byte(strings.Replace(string(text), from, to, 1)))
		for _, r := range []*replica{a, b} {
			r.waitLog(t, msgIs("policy reloaded"))
		}
	}
	setMembers("org-acme: { plan: pro, members: [u-alice, { user: u-carol, role: admin }] }", "org-acme: { plan: pro, members: [{ user: u-carol, role: admin }] }")
	for _, r := range []*replica{a, b} {
		for _, ctx := range []string{"", "org-acme", "u-alice", "org-globex"} {
			if got, why, _ := r.checkAs(t, orgKey, ctx); got != 403 || why != "tenant_not_allowed" {
				t.Errorf("after alice left, ib-context %q: %d %s, want 403 tenant_not_allowed", ctx, got, why)
			}
		}
		if got, why, tenant := r.checkAs(t, personal, ""); got != 200 || tenant != "u-alice" {
			t.Errorf("her personal key: %d %s %q", got, why, tenant)
		}
		if got, why, _ := r.checkAs(t, personal, "org-acme"); got != 403 || why != "tenant_not_allowed" {
			t.Errorf("her personal key for org-acme: %d %s", got, why)
		}
	}
	for _, who := range []string{"alice", "console"} {
		if status, body := b.api(t, who, "POST", "/v1/keys/"+id+"/refresh", nil); status != 403 || body["reason"] != "forbidden" {
			t.Errorf("%s refreshing the key: %d %v, want 403 forbidden", who, status, body)
		}
	}

	setMembers("org-acme: { plan: pro, members: [{ user: u-carol, role: admin }] }", "org-acme: { plan: pro, members: [u-alice, { user: u-carol, role: admin }] }")
	for _, r := range []*replica{a, b} {
		if got, why, tenant := r.checkAs(t, orgKey, "org-acme"); got != 200 || tenant != "org-acme" {
			t.Errorf("after alice returned: %d %s %q", got, why, tenant)
		}
	}
}

// TestValidateWarnsOfKeysWithoutMembership (RT2-01): validate accepts a
// keys file binding a key to a tenant and a user who is no member of it,
// and warns on stderr with the file, line, key, tenant and user (every
// check refuses such a key); the shipped examples draw no warning.
func TestValidateWarnsOfKeysWithoutMembership(t *testing.T) {
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token", "platform", "self-service"} {
		if code, _, errOut := runCLI(t, "", "validate", filepath.Join(testkit.Example(ex), "policy.yaml")); code != 0 || errOut != "" {
			t.Errorf("%s: exit %d, stderr %q", ex, code, errOut)
		}
	}
	dir := t.TempDir()
	copyExample(t, "workspace-token", dir)
	pol := filepath.Join(dir, "policy.yaml")
	editFile(t, pol, "workspace-1: { members: [alice] }", "workspace-1: { members: [bob] }")
	code, out, errOut := runCLI(t, "", "validate", pol)
	line := lineOf(t, filepath.Join(dir, "keys.yaml"), "id: ws1-alice")
	want := fmt.Sprintf(`warning: %s:%d: keys[0]: key "ws1-alice" is bound to tenant "workspace-1" and user "alice", who is not a member of it`,
		filepath.Join(dir, "keys.yaml"), line)
	if code != 0 || !strings.Contains(out, "valid") || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s\nwant %s", code, out, errOut, want)
	}
}
