package policy

// This file holds the Snapshot: one compiled policy, a few named tables.

import (
	"context"
	"slices"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// Snapshot is one compiled, validated policy. It is immutable once Load
// returns it and safe for concurrent use; a request pins one Snapshot for
// its whole life, and a reload publishes a new one.
type Snapshot struct {
	meta     meta            // where it came from
	creds    authn.Extractor // where credentials are read
	verifier *authn.Verifier // the trusted issuers
	remotes  []*cache.Remote // their key sets fetched over HTTP
	keys     *keys.Index     // the policy's API keys (inline and keys file)
	tenants  tenantTable
	dir      directoryConf
	plans    planTable
	credits  *creditsConf // nil: nothing metered
	tiers    tierTable
	contexts []contextRule
	routes   []route
	upstream upstream
	store    *KeyStore // nil: keys only in the policy
	api      *KeysAPI  // nil: no key-management API
}

// meta is what a Snapshot was built from.
type meta struct {
	version     string   // digest of every file's content
	files       []string // every file read: policy, keys, JWKS files
	keysFile    string   // the keys file read, if any
	keyLimit    int
	keyLifetime time.Duration
	warnings    []string // "file:line: field: what", for validate and the reload log
}

// Version identifies the snapshot's content: the first 12 hex digits of a
// SHA-256 over every file it was built from. Equal files, equal version.
func (s *Snapshot) Version() string { return s.meta.version }

// Warnings returns what the policy holds that loads but will not work as
// its author meant (a key bound to a tenant its user is no member of), one
// located line each; validate prints them and a reload logs them.
func (s *Snapshot) Warnings() []string { return slices.Clone(s.meta.warnings) }

// Files returns every file the snapshot was built from (policy, keys file,
// JWKS files), for a watcher to reload on change.
func (s *Snapshot) Files() []string { return slices.Clone(s.meta.files) }

// KeysFile returns the keys file the snapshot read, or "" when its keys
// are inline in the policy.
func (s *Snapshot) KeysFile() string { return s.meta.keysFile }

// KeyLimit returns the policy's key_limit (0: none).
func (s *Snapshot) KeyLimit() int { return s.meta.keyLimit }

// KeyLifetime returns the policy's key_lifetime: how long a key without an
// expiry of its own works after its creation (0: forever).
func (s *Snapshot) KeyLifetime() time.Duration { return s.meta.keyLifetime }

// Keys returns the policy's key index (read-only).
func (s *Snapshot) Keys() *keys.Index { return s.keys }

// Remotes returns the remote JWK sets the snapshot's issuers use.
func (s *Snapshot) Remotes() []*cache.Remote { return slices.Clone(s.remotes) }

// JWKSTried reports whether every remote JWK set of the snapshot has
// finished one fetch, successfully or not (what readiness waits for).
func (s *Snapshot) JWKSTried() bool {
	for _, r := range s.remotes {
		if !r.Tried() {
			return false
		}
	}
	return true
}

// ContextHeaders returns the configured context header names.
func (s *Snapshot) ContextHeaders() []string {
	out := make([]string, len(s.contexts))
	for i, c := range s.contexts {
		out[i] = c.header
	}
	return out
}

// CredentialHeaders returns the header names credentials are read from.
func (s *Snapshot) CredentialHeaders() []string { return s.creds.Headers() }

// Tiers returns the tier names, lowest first.
func (s *Snapshot) Tiers() []string {
	out := make([]string, len(s.tiers.list))
	for i, t := range s.tiers.list {
		out[i] = t.name
	}
	return out
}

// KeyStore returns where the policy keeps keys besides its own, or nil.
func (s *Snapshot) KeyStore() *KeyStore { return s.store }

// KeysAPI returns who may manage the store's keys through the API, or nil.
func (s *Snapshot) KeysAPI() *KeysAPI { return s.api }

// Canonical returns the canonical name of tenant v (a name or an alias) and
// whether the policy knows it.
func (s *Snapshot) Canonical(v string) (string, bool) { return s.Tenants(nil).Canonical(v) }

// IsMember reports whether user is a member of tenant (canonical name).
func (s *Snapshot) IsMember(tenant, user string) bool { return s.isMember(tenant, user, nil) }

// NamesTenant reports whether v is a tenant's name or alias, or a tenant
// the policy's keys are bound to: no user may be called so.
func (s *Snapshot) NamesTenant(v string) bool { return s.tenantNamed(v, nil, nil) }

// TierDescription returns tier's one-line description ("" for none).
func (s *Snapshot) TierDescription(tier string) string {
	if t := s.tiers.byName[tier]; t != nil {
		return t.description
	}
	return ""
}

// HasTier reports whether the policy defines tier.
func (s *Snapshot) HasTier(tier string) bool { return s.tiers.byName[tier] != nil }

// VerifyToken verifies a JWT against the policy's issuers, through tc.
func (s *Snapshot) VerifyToken(ctx context.Context, tc *authn.Tokens, raw string, now time.Time) (*authn.Token, reason.Code) {
	return s.verifier.Verify(ctx, tc, raw, now)
}

// TenantsOf returns the policy's tenants user is a member of.
func (s *Snapshot) TenantsOf(user string) []string { return s.Tenants(nil).TenantsOf(user) }
