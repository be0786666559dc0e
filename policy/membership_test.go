package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// membershipPolicy is a policy with two organizations and one key of each
// kind of binding; members is org-acme's member list. Where is "inline"
// (the policy's keys:), "yaml" or "json" (a keys file).
func membershipPolicy(t *testing.T, members, where string) (*policy.Snapshot, error) {
	t.Helper()
	entries := []string{
		`{"id": "member", "sha256": "` + sha("member-key") + `", "tenant": "org-acme", "user": "u-alice", "tier": "admin", "created": "2026-01-01"}`,
		`{"id": "left", "sha256": "` + sha("left-key") + `", "tenant": "org-acme", "user": "u-bob", "tier": "admin", "created": "2026-01-01"}`,
		`{"id": "by-alias", "sha256": "` + sha("alias-key") + `", "tenant": "acme-alias", "user": "u-bob", "tier": "admin", "created": "2026-01-01"}`,
		`{"id": "service", "sha256": "` + sha("service-key") + `", "tenant": "org-acme", "tier": "admin", "created": "2026-01-01"}`,
		`{"id": "personal", "sha256": "` + sha("personal-key") + `", "user": "u-bob", "tier": "admin", "created": "2026-01-01"}`,
	}
	keysPart, files := "", map[string]string{}
	switch where {
	case "inline":
		keysPart = "keys:\n  - " + strings.Join(entries, "\n  - ") + "\n"
	case "yaml":
		keysPart = "keys_file: keys.yaml\n"
		files["keys.yaml"] = "version: 1\nkeys:\n  - " + strings.Join(entries, "\n  - ") + "\n"
	case "json":
		keysPart = "keys_file: keys.json\n"
		files["keys.json"] = `{"version": 1, "keys": [` + strings.Join(entries, ",\n") + "]}\n"
	}
	return loadString(t, `version: 1
credentials:
  api_key: { headers: [x-api-key] }
personal_tenants: true
tenants:
  org-acme: { aliases: [acme-alias], members: [`+members+`] }
  org-beta: { members: [u-bob] }
`+keysPart+`tiers:
  admin: { requires_any: [ { key: any } ] }
context:
  - { header: ib-context }
routes:
  - { prefix: /, tier: admin, tenant: optional }
`, files)
}

// TestKeyActsOnlyWhileItsUserIsAMember (RT2-01): a key bound to a tenant
// and a user acts for that tenant only while the user is a member: every
// check is 403 tenant_not_allowed otherwise, with or without a context
// header of any value, wherever the key is written (inline, a YAML or a
// JSON keys file, bound by name or alias). A key bound to the tenant alone
// and a user's personal key do not depend on it. A reload that removes or
// restores the member applies to the next check. validate warns, naming
// the file, line, key, tenant and user.
func TestKeyActsOnlyWhileItsUserIsAMember(t *testing.T) {
	contexts := []string{"", "org-acme", "acme-alias", "org-beta", "u-alice", "u-bob", "nobody"}
	for _, where := range []string{"inline", "yaml", "json"} {
		t.Run(where, func(t *testing.T) {
			s, err := membershipPolicy(t, "u-alice", where)
			if err != nil {
				t.Fatal(err)
			}
			eng := policy.NewEngine(s, policy.EngineOptions{})
			decide := func(key, ctx string) policy.Decision {
				h := map[string]string{"x-api-key": key}
				if ctx != "" {
					h["ib-context"] = ctx
				}
				return decideWith(eng, "GET", "/x", h)
			}
			for _, key := range []string{"left-key", "alias-key"} {
				for _, ctx := range contexts {
					if d := decide(key, ctx); d.Allow || d.Reason != reason.TenantNotAllowed || d.Status() != 403 {
						t.Errorf("%s with ib-context %q: allow=%v %s, want 403 tenant_not_allowed", key, ctx, d.Allow, d.Reason)
					}
				}
			}
			for key, tenant := range map[string]string{"member-key": "org-acme", "service-key": "org-acme", "personal-key": "u-bob"} {
				if d := decide(key, ""); !d.Allow || d.Tenant != tenant {
					t.Errorf("%s: allow=%v %s tenant %q, want allowed for %s", key, d.Allow, d.Reason, d.Tenant, tenant)
				}
			}
			if d := decide("personal-key", "org-beta"); !d.Allow || d.Tenant != "org-beta" {
				t.Errorf("bob's personal key for his organization: %v %s", d.Allow, d.Reason)
			}
			warned := strings.Join(s.Warnings(), "\n")
			for _, id := range []string{"left", "by-alias"} {
				if !strings.Contains(warned, fmt.Sprintf(`key %q is bound to tenant "org-acme" and user "u-bob", who is not a member`, id)) {
					t.Errorf("no warning for %s:\n%s", id, warned)
				}
			}
			if len(s.Warnings()) != 2 || !strings.Contains(warned, ".yaml:") && !strings.Contains(warned, ".json:") {
				t.Errorf("want two located warnings:\n%s", warned)
			}

			// alice leaves org-acme (the policy is replaced), then returns.
			gone, err := membershipPolicy(t, "u-carol", where)
			if err != nil {
				t.Fatal(err)
			}
			eng.Swap(gone)
			for _, ctx := range contexts {
				if d := decide("member-key", ctx); d.Allow || d.Reason != reason.TenantNotAllowed {
					t.Errorf("after alice left, with ib-context %q: allow=%v %s", ctx, d.Allow, d.Reason)
				}
			}
			if d := decide("service-key", ""); !d.Allow {
				t.Errorf("the tenant's own key after a member left: %s", d.Reason)
			}
			if !strings.Contains(strings.Join(gone.Warnings(), "\n"), `key "member" is bound to tenant "org-acme" and user "u-alice"`) {
				t.Errorf("no warning for alice's key: %v", gone.Warnings())
			}
			eng.Swap(s)
			if d := decide("member-key", "org-acme"); !d.Allow {
				t.Errorf("after alice returned: %s", d.Reason)
			}
		})
	}
}

// TestPolicyFilesAreReadStrictly (RT2-04, RT2-05): a policy in YAML or in
// JSON form and a keys file in either form refuse a differently cased or
// repeated field name, at the top and inside an entry, naming the file and
// line.
func TestPolicyFilesAreReadStrictly(t *testing.T) {
	entry := `{"id": "k", "sha256": "` + sha("k") + `", "tier": "service", "created": "2026-01-01"}`
	policyJSON := `{"version": 1, "credentials": {"api_key": {"headers": ["x-api-key"]}}, "keys_file": "keys.json",
 "tiers": {"service": {"requires_any": [{"key": "any"}]}}, "routes": [{"prefix": "/", "tier": "service"}]}`
	for _, tc := range []struct {
		name, policy, keys, file, want string
	}{
		{"policy: a name twice", strings.Replace(policyJSON, `"version": 1,`, `"version": 1, "version": 1,`, 1), `{"version": 1, "keys": [` + entry + `]}`, "policy.yaml", `"version" already defined`},
		{"policy: another case", strings.Replace(policyJSON, `"keys_file"`, `"Keys_File"`, 1), `{"version": 1, "keys": [` + entry + `]}`, "policy.yaml", `unknown field "Keys_File"`},
		{"policy: a nested name twice", strings.Replace(policyJSON, `{"prefix": "/", "tier": "service"}`, `{"prefix": "/", "tier": "service", "tier": "admin"}`, 1), `{"version": 1, "keys": [` + entry + `]}`, "policy.yaml", `"tier" already defined`},
		{"keys file: a name twice", policyJSON, `{"version": 1, "keys": [` + strings.Replace(entry, `"tier"`, `"tier": "admin", "tier"`, 1) + `]}`, "keys.json", `keys[0]: field "tier" appears twice`},
		{"keys file: another case", policyJSON, `{"version": 1, "keys": [` + strings.Replace(entry, `"tier"`, `"Tier"`, 1) + `]}`, "keys.json", `keys[0]: unknown field "Tier"`},
		{"keys file: the list twice", policyJSON, `{"version": 1, "keys": [], "keys": [` + entry + `]}`, "keys.json", `field "keys" appears twice`},
		{"keys file: data after", policyJSON, `{"version": 1, "keys": [` + entry + `]} {}`, "keys.json", `data after`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.policy, map[string]string{"keys.json": tc.keys})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file+":") {
				t.Fatalf("%v\nwant %s: … %s", err, tc.file, tc.want)
			}
		})
	}
}
