package policy_test

import (
	"context"
	"crypto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// store is an Engine's store in memory: a real key index and a real
// directory view, as a replica's mirror publishes them (the mirror itself
// runs against PostgreSQL in the store's and the binary's tests).
type store struct {
	keys    *keys.Index
	dir     *directory.View
	wallets *credits.Wallets
}

func (s *store) View() (keys.Set, directory.Set, *credits.Wallets) { return s.keys, s.dir, s.wallets }
func (s *store) Loaded() bool                                      { return true }
func (s *store) change(c directory.Changes) {
	layers := s.dir.Layers()
	top := layers[len(layers)-1]
	s.dir = directory.NewView(s.dir.Base(), append(slices.Clone(layers[:len(layers)-1]), top.With(c, directory.NewView(s.dir.Base(), layers[:len(layers)-1]...)))...)
}

const directoryPolicy = `version: 1
credentials:
  api_key: { bearer: true }
  jwt: { headers: [x-token] }
personal_tenants: true
issuers:
  idp:
    issuer: https://idp.example
    jwks: { file: jwks.json }
    audiences: [portcullis-test]
    algorithms: [RS256]
keys_store:
  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }
directory:
  store: true
  roles:
    member:    { max_tier: service }
    developer: { max_tier: admin }
    admin:     { max_tier: admin, manage_keys: true }
  default_role: member
tenants:
  org-policy: { members: [u-erin, { user: u-frank, role: developer }] }
tiers:
  service: { requires_any: [ { key: any }, { jwt: idp } ] }
  admin:   { requires_any: [ { key: any }, { jwt: idp } ] }
  staff:   { requires_any: [ { key: superuser } ], any_tenant: true }
context:
  - { header: ib-context }
routes:
  - { prefix: /v1, methods: [GET], tier: service, tenant: optional }
  - { prefix: /v1, tier: admin, tenant: optional }
upstream_headers: { role: x-portcullis-role }
`

// directoryEngine is an engine on directoryPolicy whose store holds keys
// and a directory: org-s (alias s-alias) with u-alice a developer and
// u-dave a member; org-t with u-alice an admin.
func directoryEngine(t *testing.T) (*policy.Engine, *store, crypto.Signer) {
	t.Helper()
	k := testkit.RSAKey(t, 2048)
	s, err := loadString(t, directoryPolicy, map[string]string{"jwks.json": string(testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))})
	if err != nil {
		t.Fatal(err)
	}
	kb := keys.NewIndexBuilder(8)
	for _, e := range []keys.Entry{
		{ID: "alice-personal", Digest: keys.DigestOf("alice-personal"), User: "u-alice", Tier: "admin"},
		{ID: "alice-org-s", Digest: keys.DigestOf("alice-org-s"), User: "u-alice", Tenant: "org-s", Tier: "admin"},
		{ID: "dave-personal", Digest: keys.DigestOf("dave-personal"), User: "u-dave", Tier: "admin"},
		{ID: "org-s-service", Digest: keys.DigestOf("org-s-service"), Tenant: "org-s", Tier: "admin"},
		{ID: "frank", Digest: keys.DigestOf("frank"), User: "u-frank", Tier: "admin"},
		{ID: "erin", Digest: keys.DigestOf("erin"), User: "u-erin", Tier: "admin"},
		{ID: "staff", Digest: keys.DigestOf("staff"), Tier: "staff", Superuser: true},
	} {
		kb.Add(&e, e.Tenant, 0)
	}
	b := directory.NewBuilder(2, 3, 2)
	b.Tenant(directory.Tenant{ID: "org-s", Aliases: []string{"s-alias"}})
	b.Tenant(directory.Tenant{ID: "org-t"})
	b.Member(directory.Member{Tenant: "org-s", User: "u-alice", Role: "developer"})
	b.Member(directory.Member{Tenant: "org-s", User: "u-dave", Role: "member"})
	b.Member(directory.Member{Tenant: "org-t", User: "u-alice", Role: "admin"})
	st := &store{keys: kb.Build(), dir: directory.NewView(b.Build(), directory.NewLayer())}
	return policy.NewEngine(s, policy.EngineOptions{Store: st}), st, k
}

type dirCase struct {
	name, method, key, token, ctx string
	allow                         bool
	reason                        reason.Code
	tenant, tier, role            string
}

func runDirCases(t *testing.T, eng *policy.Engine, signer crypto.Signer, cases []dirCase) {
	t.Helper()
	for _, tc := range cases {
		h := map[string]string{}
		if tc.key != "" {
			h["authorization"] = "Bearer " + tc.key
		}
		if tc.token != "" {
			h["x-token"] = testkit.Sign(t, signer, "RS256", map[string]any{"kid": "k"}, map[string]any{"iss": "https://idp.example",
				"aud": "portcullis-test", "sub": tc.token, "exp": time.Now().Add(time.Hour).Unix()})
		}
		if tc.ctx != "" {
			h["ib-context"] = tc.ctx
		}
		method := tc.method
		if method == "" {
			method = "GET"
		}
		d := eng.Decide(context.Background(), policy.Request{Method: method, Path: "/v1/x", Headers: h})
		if d.Allow != tc.allow || d.Reason != tc.reason || (tc.allow && (d.Tenant != tc.tenant || d.Tier != tc.tier || d.Role != tc.role)) {
			t.Errorf("%s: allow=%v %s tenant %q tier %q role %q; want allow=%v %s tenant %q tier %q role %q",
				tc.name, d.Allow, d.Reason, d.Tenant, d.Tier, d.Role, tc.allow, tc.reason, tc.tenant, tc.tier, tc.role)
		}
		if tc.allow {
			role := ""
			for _, sh := range d.SetHeaders {
				if sh.Name == "x-portcullis-role" {
					role = sh.Value
				}
			}
			removed := slices.Contains(d.RemoveHeaders, "x-portcullis-role")
			if role != tc.role || removed == (tc.role != "") {
				t.Errorf("%s: role header %q (removed %v), want %q", tc.name, role, removed, tc.role)
			}
		}
	}
}

// TestDirectoryDecisions: with the directory in the store, a check follows
// it (CONTRACT §10): store tenants and their aliases in context headers for
// members only; a role caps the tier a member reaches there (a route above
// it is tier_too_low, x-auth-tier carries the cap, the role goes upstream);
// a personal context and a tenant's own key have no cap; policy tenants
// keep working beside the store, their members written bare (the default
// role) or with a role.
func TestDirectoryDecisions(t *testing.T) {
	eng, _, signer := directoryEngine(t)
	runDirCases(t, eng, signer, []dirCase{
		{name: "alice for org-s, a developer", key: "alice-personal", ctx: "org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin", role: "developer"},
		{name: "by alias", key: "alice-personal", ctx: "s-alias", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin", role: "developer"},
		{name: "alice writes for org-s", method: "POST", key: "alice-personal", ctx: "org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin", role: "developer"},
		{name: "alice's org key, no header", method: "POST", key: "alice-org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin", role: "developer"},
		{name: "dave reads for org-s, capped", key: "dave-personal", ctx: "org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "service", role: "member"},
		{name: "dave writes for org-s: above his role", method: "POST", key: "dave-personal", ctx: "org-s", reason: reason.TierTooLow},
		{name: "dave writes personally: no cap", method: "POST", key: "dave-personal", allow: true, reason: reason.Allowed, tenant: "u-dave", tier: "admin"},
		{name: "dave for org-t: not a member", key: "dave-personal", ctx: "org-t", reason: reason.TenantNotAllowed},
		{name: "org-s's own key writes: no role", method: "POST", key: "org-s-service", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin"},
		{name: "alice's token for org-t, an admin", token: "u-alice", ctx: "org-t", method: "POST", allow: true, reason: reason.Allowed, tenant: "org-t", tier: "admin", role: "admin"},
		{name: "a user's id naming a store tenant", token: "org-s", reason: reason.TenantNotAllowed},
		{name: "staff for org-s: any tenant, no role", key: "staff", ctx: "org-s", method: "POST", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "staff"},
		{name: "erin for the policy tenant: default role", key: "erin", ctx: "org-policy", allow: true, reason: reason.Allowed, tenant: "org-policy", tier: "service", role: "member"},
		{name: "erin writes there: above it", method: "POST", key: "erin", ctx: "org-policy", reason: reason.TierTooLow},
		{name: "frank writes there: a developer", method: "POST", key: "frank", ctx: "org-policy", allow: true, reason: reason.Allowed, tenant: "org-policy", tier: "admin", role: "developer"},
	})
}

// TestDirectoryChangesApplyToTheNextCheck: every kind of directory change
// applies to the next check, and undoing it restores the same keys:
// a membership ended (the member's keys bound to the tenant and context
// headers naming it are refused; the tenant's own key is not), a role
// changed (the cap follows), a tenant disabled (tenant_disabled for every
// way of acting for it but any_tenant tiers), a user disabled
// (user_disabled for each of their keys and tokens), an alias removed, a
// tenant deleted.
func TestDirectoryChangesApplyToTheNextCheck(t *testing.T) {
	eng, st, signer := directoryEngine(t)
	st.change(directory.Changes{Members: []directory.Member{{Tenant: "org-s", User: "u-alice"}}}) // ended
	runDirCases(t, eng, signer, []dirCase{
		{name: "alice's org key after she left", key: "alice-org-s", reason: reason.TenantNotAllowed},
		{name: "with the header", key: "alice-org-s", ctx: "org-s", reason: reason.TenantNotAllowed},
		{name: "her personal key for org-s", key: "alice-personal", ctx: "org-s", reason: reason.TenantNotAllowed},
		{name: "her token for org-s", token: "u-alice", ctx: "org-s", reason: reason.TenantNotAllowed},
		{name: "her personal key, personally", key: "alice-personal", allow: true, reason: reason.Allowed, tenant: "u-alice", tier: "admin"},
		{name: "org-s's own key", key: "org-s-service", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "admin"},
	})
	st.change(directory.Changes{Members: []directory.Member{{Tenant: "org-s", User: "u-alice", Role: "member"}}}) // back, as a member
	runDirCases(t, eng, signer, []dirCase{
		{name: "back, capped", key: "alice-org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "service", role: "member"},
		{name: "back, writing", method: "POST", key: "alice-org-s", reason: reason.TierTooLow},
	})
	st.change(directory.Changes{Tenants: []directory.Tenant{{ID: "org-s", Aliases: []string{"s-alias"}, Disabled: true}}})
	runDirCases(t, eng, signer, []dirCase{
		{name: "disabled: the bound key", key: "alice-org-s", reason: reason.TenantDisabled},
		{name: "disabled: its own key", key: "org-s-service", reason: reason.TenantDisabled},
		{name: "disabled: by header", key: "dave-personal", ctx: "org-s", reason: reason.TenantDisabled},
		{name: "disabled: by alias", key: "dave-personal", ctx: "s-alias", reason: reason.TenantDisabled},
		{name: "disabled: staff still", key: "staff", ctx: "org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "staff"},
		{name: "disabled: dave personally", key: "dave-personal", allow: true, reason: reason.Allowed, tenant: "u-dave", tier: "admin"},
	})
	st.change(directory.Changes{Tenants: []directory.Tenant{{ID: "org-s"}}}) // enabled, alias gone
	st.change(directory.Changes{Users: []directory.User{{ID: "u-alice", Disabled: true}}})
	runDirCases(t, eng, signer, []dirCase{
		{name: "alias removed", key: "dave-personal", ctx: "s-alias", reason: reason.TenantNotAllowed},
		{name: "alice disabled: org key", key: "alice-org-s", reason: reason.UserDisabled},
		{name: "alice disabled: personal key", key: "alice-personal", reason: reason.UserDisabled},
		{name: "alice disabled: token", token: "u-alice", reason: reason.UserDisabled},
		{name: "dave unaffected", key: "dave-personal", ctx: "org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "service", role: "member"},
	})
	st.change(directory.Changes{Users: []directory.User{{ID: "u-alice"}}, Deleted: []string{"org-t"}})
	runDirCases(t, eng, signer, []dirCase{
		{name: "alice enabled again", key: "alice-org-s", allow: true, reason: reason.Allowed, tenant: "org-s", tier: "service", role: "member"},
		{name: "a deleted tenant", token: "u-alice", ctx: "org-t", reason: reason.TenantNotAllowed},
	})
}

// TestDirectoryPolicyValidation: roles need tiers that exist, a default
// role that exists, member roles that exist; the store directory needs the
// key store.
func TestDirectoryPolicyValidation(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown max tier", "max_tier: service }", "max_tier: gold }", `directory.roles.member.max_tier: unknown tier "gold"`},
		{"unknown default role", "default_role: member", "default_role: boss", `directory.default_role: unknown role "boss"`},
		{"no default role", "default_role: member", "", `directory.default_role: name the role`},
		{"unknown member role", "role: developer }", "role: boss }", `tenants.org-policy.members[1].role: unknown role "boss"`},
		{"no key store", "keys_store:\n  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }\n", "", `directory.store: the directory in the store needs keys_store`},
		{"a member twice", "members: [u-erin,", "members: [u-erin, u-erin,", `"u-erin" is listed twice`},
		{"a member's unknown field", "{ user: u-frank, role: developer }", "{ user: u-frank, rank: developer }", `unknown field "rank"`},
		{"a bad role name", "    member:    { max_tier: service }", "    Member:    { max_tier: service }", `a role name is`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, strings.Replace(directoryPolicy, tc.from, tc.to, 1), map[string]string{"jwks.json": `{"keys":[]}`})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant %s", err, tc.want)
			}
		})
	}
}
