package policy

// This file compiles where keys live besides the policy (keys_store) and
// who may manage them through the key-management API (keys_api).

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

// KeyStore says where the policy's store keys live.
type KeyStore struct {
	DSNEnv string // the environment variable holding the PostgreSQL DSN
}

// KeysAPI is who may call the key-management API, and what a user may do
// with it. It is immutable.
type KeysAPI struct {
	managers     map[keys.Digest]string // management token digests → their ids
	issuers      map[string]bool        // self-service issuer ids
	tiers        []string               // tiers a user may give
	adminGroups  []string
	perUserLimit int
}

// Manager returns the id of the management token token is, if it is one.
func (a *KeysAPI) Manager(token string) (string, bool) {
	id, ok := a.managers[keys.DigestOf(token)]
	return id, ok
}

// SelfService reports whether a token of issuer id may call the API as its
// user.
func (a *KeysAPI) SelfService(id string) bool { return a.issuers[id] }

// UserMayGive reports whether a user may give a key tier.
func (a *KeysAPI) UserMayGive(tier string) bool { return slices.Contains(a.tiers, tier) }

// Tiers returns the tiers a self-service user may give their keys.
func (a *KeysAPI) Tiers() []string { return slices.Clone(a.tiers) }

// Admin reports whether a user's token puts them in an admin group: they
// manage every key bound to a tenant they are a member of.
func (a *KeysAPI) Admin(t *authn.Token) bool {
	return slices.ContainsFunc(a.adminGroups, t.InGroup)
}

// PerUserLimit returns how many keys a user may have (0: no limit).
func (a *KeysAPI) PerUserLimit() int { return a.perUserLimit }

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *compiler) store(f *policyFile, issuers map[string]*authn.Issuer) {
	if st := f.KeysStore; st != nil {
		switch {
		case st.Postgres == nil:
			c.errf("keys_store", "name the store: postgres: { dsn_env: PORTCULLIS_DATABASE_URL }")
		case !envNameRe.MatchString(st.Postgres.DSNEnv):
			c.errf("keys_store.postgres.dsn_env", "want the name of the environment variable holding the DSN (never the DSN), got %q",
				st.Postgres.DSNEnv)
		default:
			c.s.store = &KeyStore{DSNEnv: st.Postgres.DSNEnv}
		}
		if f.Credentials.APIKey == nil {
			c.errf("keys_store", "a key store is configured but credentials.api_key is not, so no key is ever read")
		}
	}
	if api := f.KeysAPI; api != nil {
		if f.KeysStore == nil {
			c.errf("keys_api", "the key-management API writes to a key store: configure keys_store")
		}
		c.s.api = c.keysAPI(api, issuers)
	}
}

func (c *compiler) keysAPI(f *keysAPIFile, issuers map[string]*authn.Issuer) *KeysAPI {
	a := &KeysAPI{managers: map[keys.Digest]string{}, issuers: map[string]bool{}, perUserLimit: f.PerUserLimit}
	if f.PerUserLimit < 0 {
		c.errf("keys_api.per_user_limit", "must not be negative")
	}
	if f.ManagementTokensFile == "" && f.SelfService == nil {
		c.errf("keys_api", "nobody could call the API: set management_tokens_file, self_service, or both")
	}
	if f.ManagementTokensFile != "" {
		c.managementTokens(c.rel(f.ManagementTokensFile), a)
	}
	if ss := f.SelfService; ss != nil {
		if len(ss.Issuers) == 0 {
			c.errf("keys_api.self_service.issuers", "list the issuers whose users may manage their keys")
		}
		for i, id := range ss.Issuers {
			is := issuers[id]
			switch {
			case is == nil:
				c.errf(fmt.Sprintf("keys_api.self_service.issuers[%d]", i), "unknown issuer %q (%s)", id, listing("issuers", sortedKeys(issuers)))
			case len(ss.AdminGroups) > 0 && !is.HasGroups():
				c.errf(fmt.Sprintf("keys_api.self_service.issuers[%d]", i), "admin_groups need issuer %q to have claims.groups", id)
			}
			a.issuers[id] = true
		}
		for i, t := range ss.Tiers {
			if c.s.tiers.byName[t] == nil {
				c.errf(fmt.Sprintf("keys_api.self_service.tiers[%d]", i), "unknown tier %q (%s)", t, c.tierNames())
			}
		}
		if len(ss.Tiers) == 0 {
			c.errf("keys_api.self_service.tiers", "list the tiers a user may give a key")
		}
		a.tiers, a.adminGroups = slices.Clone(ss.Tiers), slices.Clone(ss.AdminGroups)
	}
	return a
}

// managementTokens reads the management tokens file into a.
func (c *compiler) managementTokens(path string, a *KeysAPI) {
	data, err := c.readFile(path)
	if err != nil {
		c.errf("keys_api.management_tokens_file", "cannot read the management tokens file: %v", err)
		return
	}
	c.s.meta.files = append(c.s.meta.files, path)
	var tf tokensFile
	src, err := source.Decode(path, data, &tf)
	c.p.Add(err)
	if src == nil {
		return
	}
	if tf.Version != 1 {
		c.p.Addf(src, "version", "want version: 1, got %d", tf.Version)
	}
	ids := map[string]bool{}
	for i, t := range tf.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		if t.ID == "" || ids[t.ID] {
			c.p.Addf(src, p+".id", "want a unique id, got %q", t.ID)
		}
		ids[t.ID] = true
		d, err := keys.ParseDigest(t.SHA256)
		if err != nil {
			c.p.Addf(src, p+".sha256", "%v", err)
			continue
		}
		a.managers[d] = t.ID
	}
}

// AdmitKey checks a key an operator adds to the key store against the
// policy, the way a file's keys are checked: a known tier, a known tenant
// (bound by its canonical name), a user that names no tenant, a user or a
// tenant, a user who is a member of the tenant the key is bound to; and gives it the policy's key_lifetime when it has no expiry.
func (s *Snapshot) AdmitKey(e *keys.Entry) error {
	if !s.HasTier(e.Tier) {
		return fmt.Errorf("tier %q is not a tier of the policy (%s)", e.Tier, listing("tiers", s.Tiers()))
	}
	if e.Tenant != "" {
		canon, ok := s.Canonical(e.Tenant)
		if !ok {
			return fmt.Errorf("tenant %q is not a tenant of the policy", e.Tenant)
		}
		e.Tenant = canon
	}
	if e.User != "" && s.NamesTenant(e.User) {
		return fmt.Errorf("user %q is a tenant's name or alias; users and tenants share the tenant header", e.User)
	}
	if e.User == "" && e.Tenant == "" {
		return fmt.Errorf("a key in the key store needs a user or a tenant")
	}
	if e.User != "" && e.Tenant != "" && !s.IsMember(e.Tenant, e.User) {
		return fmt.Errorf("user %q is not a member of tenant %q: a key bound to both acts only while the user is a member", e.User, e.Tenant)
	}
	if life := s.KeyLifetime(); life > 0 && e.Expires.IsZero() {
		e.Expires = e.Created.Add(life)
	}
	return nil
}
