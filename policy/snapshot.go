package policy

import (
	"time"

	"github.com/portcullis/portcullis/cache"
)

// Snapshot is one compiled, validated policy. It is immutable once Load
// returns it and safe for concurrent use; a request pins one Snapshot for its
// whole life, and a reload publishes a new one.
type Snapshot struct {
	path     string
	files    []string // every file read: policy, keys, JWKS files
	version  string   // digest of those files' contents
	keysFile string   // the keys file read, if any

	apiKeyHeaders []string
	bearerKeys    bool
	jwtHeaders    []string
	noneValues    []string

	issuers map[string]*issuer // by id
	byIss   map[string]*issuer // by "iss" claim

	tenants  map[string]*tenant // by canonical name
	aliases  map[string]string  // alias or name → canonical name
	personal bool

	keys        map[cache.Digest]*Key
	keyList     []*Key          // file order
	keyTenants  map[string]bool // tenants keys are bound to
	keyLimit    int
	keyLifetime time.Duration

	tiers    []*tier // lowest first
	tierName map[string]*tier

	contexts []contextRule
	routes   []route

	up            upstream
	alwaysRemove  []string // context headers, and credential headers when stripped
	maxTokenBytes int
	skew          time.Duration

	remotes []*cache.Remote
}

type tenant struct {
	name    string
	members map[string]bool
}

type tier struct {
	name      string
	rank      int // 1 = lowest
	anyTenant bool
	reqs      []requirement
}

type keyNeed int

const (
	keyNone keyNeed = iota
	keyCustomer
	keySuperuser
	keyAny
)

type requirement struct {
	key      keyNeed
	issuer   *issuer
	scopes   []string
	groups   []string
	tokenUse string
}

type contextRule struct {
	header string
	tiers  map[string]bool // nil = any tier
}

type upstream struct {
	tenant, tenantKind, user, tier, credential string // "" = not sent
	strip                                      bool
}

// Key is one API key entry. Only the SHA-256 digest of the key is held.
// It is laid out for a million of them: what every check reads inline,
// what only tools read (label, description, rotation) behind one pointer
// that is nil for most keys. A Key is immutable once loaded.
type Key struct {
	ID        string
	Digest    cache.Digest
	Tenant    string
	User      string
	Superuser bool
	Disabled  bool
	Rotated   bool  // this entry stands for an old value of key ID
	created   int64 // Unix seconds
	expires   int64 // Unix seconds, effective (explicit, or created + the policy's key lifetime); 0 = never
	tier      *tier
	meta      *keyMeta
}

type keyMeta struct {
	tierName    string // when the key was loaded without a policy (no *tier)
	label       string
	description string
	previous    []Previous
}

func (k *Key) metaOrEmpty() *keyMeta {
	if k.meta == nil {
		return &keyMeta{}
	}
	return k.meta
}

// Tier returns the name of the highest tier the key may reach.
func (k *Key) Tier() string {
	if k.tier != nil {
		return k.tier.name
	}
	return k.metaOrEmpty().tierName
}

// Label returns the key's human-readable name.
func (k *Key) Label() string { return k.metaOrEmpty().label }

// Description returns what the key is for.
func (k *Key) Description() string { return k.metaOrEmpty().description }

// Previous returns the old values of a rotated key, each valid until its
// Expires.
func (k *Key) Previous() []Previous { return k.metaOrEmpty().previous }

// Created returns when the key was made.
func (k *Key) Created() time.Time { return unixTime(k.created) }

// Expires returns the key's effective expiry (zero: never).
func (k *Key) Expires() time.Time { return unixTime(k.expires) }

// expiredAt reports whether the key has expired at now.
func (k *Key) expiredAt(now time.Time) bool { return k.expires != 0 && now.Unix() >= k.expires }

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// Previous is an old value of a rotated key.
type Previous struct {
	Digest  cache.Digest
	Expires time.Time
}

// Version identifies the snapshot's content: the first 12 hex digits of a
// SHA-256 over every file it was built from. Equal files, equal version.
func (s *Snapshot) Version() string { return s.version }

// Files returns every file the snapshot was built from (policy, keys file,
// JWKS files), for a watcher to reload on change.
func (s *Snapshot) Files() []string { return s.files }

// KeysFile returns the keys file the snapshot read, or "" when its keys
// are inline in the policy.
func (s *Snapshot) KeysFile() string { return s.keysFile }

// Keys returns the API key entries in file order.
func (s *Snapshot) Keys() []*Key { return s.keyList }

// Remotes returns the remote JWK sets the snapshot's issuers use.
func (s *Snapshot) Remotes() []*cache.Remote { return s.remotes }

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
func (s *Snapshot) CredentialHeaders() []string {
	out := append([]string(nil), s.apiKeyHeaders...)
	if s.bearerKeys {
		out = appendNew(out, "authorization")
	}
	for _, h := range s.jwtHeaders {
		out = appendNew(out, h)
	}
	return out
}

func appendNew(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}
