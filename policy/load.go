package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/cache"
	"go.yaml.in/yaml/v3"
)

// Defaults applied when the policy leaves a setting out.
const (
	DefaultMaxTokenBytes = 8 << 10
	DefaultClockSkew     = 60 * time.Second
	MaxClockSkew         = 5 * time.Minute
)

// Default upstream header names (CONTRACT.md §3).
const (
	DefaultTenantHeader     = "x-tenant-id"
	DefaultTenantKindHeader = "x-tenant-kind"
	DefaultUserHeader       = "x-user-id"
	DefaultTierHeader       = "x-auth-tier"
	DefaultCredentialHeader = "x-credential-id"
)

// Algorithms is the set of JWS algorithms an issuer may allow. "none" and
// the HMAC family are never allowed: an ext_authz server holds only public keys.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// LoadOptions are the outside things a load needs.
type LoadOptions struct {
	// JWKS shares remote key sets between successive loads. Nil: remote
	// sets are fetched on first use and never refreshed in the background
	// (right for one-off commands such as check and validate).
	JWKS *cache.Registry
	// KeysFile, when set, is read instead of the policy's keys_file (to
	// validate a keys file about to replace it).
	KeysFile string
}

// Load reads, validates and compiles the policy at path (YAML or JSON) and
// the keys and JWKS files it names (relative paths are relative to the
// policy's folder). The error lists every problem found, one per line, as
// "file:line: field: what is wrong". It is safe to call concurrently.
func Load(path string, opts LoadOptions) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	digest := sha256.New()
	digest.Write(data)
	var f policyFile
	src, err := decodeStrict(path, data, &f)
	if src == nil {
		return nil, err
	}
	c := compiler{src: src, dir: filepath.Dir(path), opts: opts, digest: digest,
		s: &Snapshot{path: path, files: []string{path}}}
	if err != nil {
		c.p.errs = append(c.p.errs, err)
	}
	switch {
	case opts.KeysFile != "":
		c.loadKeysFile(opts.KeysFile)
	case f.KeysFile != "":
		c.loadKeysFile(f.KeysFile)
	}
	c.compile(&f)
	if err := c.p.err(); err != nil {
		return nil, err
	}
	c.s.version = hex.EncodeToString(digest.Sum(nil))[:12]
	return c.s, nil
}

type compiler struct {
	src      *source
	keysSrc  *source
	keys     []keyFile
	keysJSON string // a JSON keys file, streamed
	dir      string
	opts     LoadOptions
	p        problems
	s        *Snapshot
	digest   hash.Hash // of every file read, for Snapshot.Version
}

// readFile reads a file the policy depends on, adding it to the digest.
func (c *compiler) readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		fmt.Fprintf(c.digest, "\x00%s\x00%d\x00", path, len(data))
		c.digest.Write(data)
	}
	return data, err
}

func (c *compiler) errf(path, format string, args ...any) { c.p.addf(c.src, path, format, args...) }

func (c *compiler) rel(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *compiler) loadKeysFile(name string) {
	path := c.rel(name)
	if strings.HasSuffix(path, ".json") {
		if _, err := os.Stat(path); err != nil {
			c.errf("keys_file", "cannot read keys file: %v", err)
			return
		}
		c.keysJSON = path // streamed when the keys are compiled
		c.s.files = append(c.s.files, path)
		c.s.keysFile = path
		return
	}
	data, err := c.readFile(path)
	if err != nil {
		c.errf("keys_file", "cannot read keys file: %v", err)
		return
	}
	var kf keysFile
	src, err := decodeStrict(path, data, &kf)
	if err != nil {
		c.p.errs = append(c.p.errs, err)
	}
	if src == nil {
		return
	}
	if kf.Version != 0 && kf.Version != 1 {
		c.p.addf(src, "version", "unsupported keys file version %d (want 1)", kf.Version)
	}
	c.keysSrc = src
	c.keys = kf.Keys
	c.s.files = append(c.s.files, path)
	c.s.keysFile = path
}

func (c *compiler) compile(f *policyFile) {
	if f.Version != 1 {
		c.errf("version", "want version: 1, got %d", f.Version)
	}
	c.credentials(f)
	c.issuers(f)
	c.tenants(f)
	c.tiers(f)
	c.apiKeys(f)
	c.contexts(f)
	c.routes(f)
	c.upstream(f)
	c.limits(f)
}

// headerName validates and lower-cases a header name.
func (c *compiler) headerName(path, h string) string {
	if h == "" {
		c.errf(path, "empty header name")
		return ""
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			c.errf(path, "invalid header name %q", h)
			return ""
		}
	}
	return strings.ToLower(h)
}

func (c *compiler) credentials(f *policyFile) {
	cr := f.Credentials
	if cr.APIKey == nil && cr.JWT == nil {
		c.errf("credentials", "configure at least one of credentials.api_key and credentials.jwt")
	}
	if k := cr.APIKey; k != nil {
		for i, h := range k.Headers {
			if n := c.headerName(fmt.Sprintf("credentials.api_key.headers[%d]", i), h); n != "" {
				c.s.apiKeyHeaders = appendNew(c.s.apiKeyHeaders, n)
			}
		}
		c.s.bearerKeys = k.Bearer
		if len(k.Headers) == 0 && !k.Bearer {
			c.errf("credentials.api_key", "set headers (e.g. [x-api-key]) or bearer: true")
		}
		if slices.Contains(c.s.apiKeyHeaders, "authorization") {
			c.errf("credentials.api_key.headers", "use bearer: true to read keys from authorization")
		}
	}
	if j := cr.JWT; j != nil {
		for i, h := range j.Headers {
			if n := c.headerName(fmt.Sprintf("credentials.jwt.headers[%d]", i), h); n != "" {
				c.s.jwtHeaders = appendNew(c.s.jwtHeaders, n)
				if slices.Contains(c.s.apiKeyHeaders, n) {
					c.errf(fmt.Sprintf("credentials.jwt.headers[%d]", i), "%q is also an API key header", n)
				}
			}
		}
		if len(j.Headers) == 0 {
			c.s.jwtHeaders = []string{"authorization"}
		}
		c.s.noneValues = j.None
	}
}

func (c *compiler) issuers(f *policyFile) {
	c.s.issuers = map[string]*issuer{}
	c.s.byIss = map[string]*issuer{}
	if len(f.Issuers) > 0 && f.Credentials.JWT == nil {
		c.errf("issuers", "issuers are configured but credentials.jwt is not, so no token is ever read")
	}
	for _, id := range sortedKeys(f.Issuers) {
		in := f.Issuers[id]
		p := "issuers." + id
		is := &issuer{id: id, iss: in.Issuer, audiences: in.Audiences, requireKID: true}
		if in.RequireKID != nil {
			is.requireKID = *in.RequireKID
		}
		if in.Issuer == "" {
			c.errf(p+".issuer", "required: the exact \"iss\" claim of this issuer's tokens")
		} else if other, dup := c.s.byIss[in.Issuer]; dup {
			c.errf(p+".issuer", "issuer %q is also issuer %q's", in.Issuer, other.id)
		}
		if len(in.Audiences) == 0 {
			c.errf(p+".audiences", "required: the accepted \"aud\" values (or Cognito client ids)")
		}
		if len(in.Algorithms) == 0 {
			c.errf(p+".algorithms", "required: e.g. [RS256]")
		}
		for i, a := range in.Algorithms {
			switch {
			case slices.Contains(Algorithms, a):
				is.algs = append(is.algs, a)
			case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
				c.errf(fmt.Sprintf("%s.algorithms[%d]", p, i), "%q is never allowed (only public-key algorithms: %s)", a, strings.Join(Algorithms, ", "))
			default:
				c.errf(fmt.Sprintf("%s.algorithms[%d]", p, i), "unknown algorithm %q (want one of %s)", a, strings.Join(Algorithms, ", "))
			}
		}
		is.userClaims = orDefault(in.Claims.User, "sub")
		is.tenantClaims = in.Claims.Tenant
		is.groupClaims = in.Claims.Groups
		is.source = c.jwks(p+".jwks", in.JWKS)
		c.s.issuers[id] = is
		if in.Issuer != "" {
			c.s.byIss[in.Issuer] = is
		}
	}
}

func orDefault(l []string, d string) []string {
	if len(l) == 0 {
		return []string{d}
	}
	return l
}

func (c *compiler) jwks(p string, j jwksFile) cache.Source {
	n := 0
	for _, set := range []bool{j.URI != "", j.File != "", j.Keys != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		c.errf(p, "set exactly one of uri, file and keys")
		return nil
	}
	refresh := c.duration(p+".refresh", j.Refresh)
	if j.Refresh != "" && j.URI == "" {
		c.errf(p+".refresh", "refresh applies only to a jwks uri")
	}
	switch {
	case j.URI != "":
		u, err := url.Parse(j.URI)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			c.errf(p+".uri", "want an absolute http(s) URL, got %q", cache.Redacted(j.URI))
			return nil
		}
		if refresh != 0 && refresh < time.Minute {
			c.errf(p+".refresh", "refresh %s is below the 1m minimum", refresh)
		}
		// Issuers sharing a key set share one Remote; across reloads the
		// registry shares them once this snapshot is committed.
		for _, r := range c.s.remotes {
			if r.Is(j.URI, refresh) {
				return r
			}
		}
		reg := c.opts.JWKS
		if reg == nil {
			reg = cache.NewRegistry(cache.RemoteOptions{}, false)
		}
		r := reg.Remote(j.URI, refresh)
		c.s.remotes = append(c.s.remotes, r)
		return r
	case j.File != "":
		path := c.rel(j.File)
		data, err := c.readFile(path)
		if err != nil {
			c.errf(p+".file", "cannot read JWK set: %v", err)
			return nil
		}
		set, err := cache.ParseKeySet(data)
		if err != nil {
			c.errf(p+".file", "%s: %v", path, err)
			return nil
		}
		c.s.files = append(c.s.files, path)
		return cache.NewStatic(set)
	default:
		data, err := json.Marshal(map[string]any{"keys": j.Keys})
		if err != nil {
			c.errf(p+".keys", "cannot encode inline keys: %v", err)
			return nil
		}
		set, err := cache.ParseKeySet(data)
		if err != nil {
			c.errf(p+".keys", "%v", err)
			return nil
		}
		return cache.NewStatic(set)
	}
}

func (c *compiler) tenants(f *policyFile) {
	c.s.tenants = map[string]*tenant{}
	c.s.aliases = map[string]string{}
	c.s.personal = f.PersonalTenants
	for _, name := range sortedKeys(f.Tenants) {
		t := &tenant{name: name, members: map[string]bool{}}
		for _, m := range f.Tenants[name].Members {
			t.members[m] = true
		}
		c.s.tenants[name] = t
		c.s.aliases[name] = name
	}
	for _, name := range sortedKeys(f.Tenants) {
		for i, a := range f.Tenants[name].Aliases {
			if other, dup := c.s.aliases[a]; dup {
				c.errf(fmt.Sprintf("tenants.%s.aliases[%d]", name, i), "%q already names tenant %q", a, other)
				continue
			}
			c.s.aliases[a] = name
		}
	}
	for _, name := range sortedKeys(f.Tenants) {
		for i, m := range f.Tenants[name].Members {
			if other, ok := c.s.aliases[m]; ok {
				c.errf(fmt.Sprintf("tenants.%s.members[%d]", name, i), "member %q is also tenant %q's name or alias; "+
					"users and tenants share the tenant header, so a user id must not name a tenant", m, other)
			}
		}
	}
}

func (c *compiler) tiers(f *policyFile) {
	c.s.tierName = map[string]*tier{}
	if len(f.Tiers) == 0 {
		c.errf("tiers", "define at least one tier")
		return
	}
	// Tiers rank in the order written, lowest first; a map loses that
	// order, so read it from the tree.
	for _, name := range mappingKeys(c.src.root, "tiers") {
		t := &tier{name: name, rank: len(c.s.tiers) + 1, anyTenant: f.Tiers[name].AnyTenant}
		c.s.tiers = append(c.s.tiers, t)
		c.s.tierName[name] = t
	}
	for _, t := range c.s.tiers {
		tf := f.Tiers[t.name]
		p := "tiers." + t.name
		if len(tf.RequiresAny) == 0 {
			c.errf(p+".requires_any", "list at least one requirement")
		}
		for i, rf := range tf.RequiresAny {
			t.reqs = append(t.reqs, c.requirement(fmt.Sprintf("%s.requires_any[%d]", p, i), rf))
		}
	}
}

func (c *compiler) requirement(p string, rf requirementFile) requirement {
	var r requirement
	switch rf.Key {
	case "":
	case "customer":
		r.key = keyCustomer
	case "superuser":
		r.key = keySuperuser
	case "any":
		r.key = keyAny
	default:
		c.errf(p+".key", "want customer, superuser or any, got %q", rf.Key)
	}
	if rf.JWT != "" {
		r.issuer = c.s.issuers[rf.JWT]
		if r.issuer == nil {
			c.errf(p+".jwt", "unknown issuer %q (%s)", rf.JWT, listing("issuers", sortedKeys(c.s.issuers)))
		}
	} else if len(rf.Scopes) > 0 || len(rf.Groups) > 0 || rf.TokenUse != "" {
		c.errf(p, "scopes, groups and token_use need jwt: <issuer>")
	}
	if rf.Key == "" && rf.JWT == "" {
		c.errf(p, "name a key (customer, superuser, any) or a jwt issuer, or both")
	}
	if len(rf.Groups) > 0 && r.issuer != nil && len(r.issuer.groupClaims) == 0 {
		c.errf(p+".groups", "issuer %q has no claims.groups", rf.JWT)
	}
	r.scopes, r.groups, r.tokenUse = rf.Scopes, rf.Groups, rf.TokenUse
	return r
}

// keyEntry is one key as written, with where it was written.
type keyEntry struct {
	k   *keyFile
	src *source
	idx int // index in the file's keys list
}

func (e keyEntry) path() string { return fmt.Sprintf("keys[%d]", e.idx) }

func (c *compiler) apiKeys(f *policyFile) {
	c.s.keyLimit = f.KeyLimit
	c.s.keyLifetime = c.duration("key_lifetime", f.KeyLifetime)
	if f.KeyLimit < 0 {
		c.errf("key_limit", "must not be negative")
	}
	kc := c.newKeyCompiler(true)
	for i := range f.Keys {
		kc.add(keyEntry{&f.Keys[i], c.src, i})
	}
	c.eachFileKey(kc.add)
	n := len(c.s.keyList)
	if n > 0 && f.Credentials.APIKey == nil {
		c.errf("keys", "keys are configured but credentials.api_key is not, so no key is ever read")
	}
	if f.KeyLimit > 0 && n > f.KeyLimit {
		src, at := c.src, "key_limit"
		if c.keysSrc != nil {
			src, at = c.keysSrc, "keys"
		}
		c.p.addf(src, at, "%d keys exceed the policy's key_limit of %d; revoke keys or raise key_limit", n, f.KeyLimit)
	}
	kc.finish()
}

// eachFileKey passes every key of the keys file to add: from the decoded
// YAML, or streamed from a JSON keys file (a million keys load without
// holding the file or its decoded form in memory).
func (c *compiler) eachFileKey(add func(keyEntry)) {
	switch {
	case c.keysJSON != "":
		if err := c.streamJSONKeys(c.keysJSON, add); err != nil {
			c.p.errs = append(c.p.errs, err)
		}
	case c.keysSrc != nil:
		for i := range c.keys {
			add(keyEntry{&c.keys[i], c.keysSrc, i})
		}
	}
}

// keyCompiler checks and indexes key entries one at a time.
type keyCompiler struct {
	c          *compiler
	checkTiers bool // false for a keys file on its own: tier names unknown
	where      []keyEntry
	intern     map[string]string
}

func (c *compiler) newKeyCompiler(checkTiers bool) *keyCompiler {
	c.s.keys = map[cache.Digest]*Key{}
	c.s.keyTenants = map[string]bool{}
	return &keyCompiler{c: c, checkTiers: checkTiers, intern: map[string]string{}}
}

// str shares one copy of the strings many keys repeat (tenants, tiers).
func (kc *keyCompiler) str(s string) string {
	if v, ok := kc.intern[s]; ok {
		return v
	}
	if len(kc.intern) < 1<<16 {
		kc.intern[s] = s
	}
	return s
}

func (kc *keyCompiler) digest(bad func(field, format string, args ...any), field, hexSum string) (cache.Digest, bool) {
	var d cache.Digest
	if len(hexSum) != 2*len(d) {
		bad(field, "want the key's SHA-256 as 64 hex digits (portcullis keys hash)")
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(hexSum)); err != nil {
		bad(field, "want the key's SHA-256 as 64 hex digits (portcullis keys hash)")
		return d, false
	}
	if other, dup := kc.c.s.keys[d]; dup {
		bad(field, "same key as %q", other.ID)
		return d, false
	}
	return d, true
}

func timestamp(bad func(field, format string, args ...any), field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := ParseTimestamp(v)
	if err != nil {
		bad(field, "%v", err)
	}
	return t
}

func (kc *keyCompiler) add(e keyEntry) {
	c, k := kc.c, e.k
	bad := func(field, format string, args ...any) { c.p.addf(e.src, e.path()+field, format, args...) }
	created, expires := timestamp(bad, ".created", k.Created), timestamp(bad, ".expires", k.Expires)
	// A key is bound to its tenant's canonical name, never an alias: the
	// tenant header carries one name per tenant.
	key := &Key{ID: k.ID, Tenant: kc.str(c.s.canonical(k.Tenant)), User: k.User, Superuser: k.Superuser, Disabled: k.Disabled,
		created: unixSeconds(created), expires: unixSeconds(expires)}
	if k.Label != "" || k.Description != "" || len(k.Previous) > 0 || !kc.checkTiers {
		key.meta = &keyMeta{label: k.Label, description: k.Description}
	}
	if k.ID == "" {
		bad(".id", "required")
	}
	d, ok := kc.digest(bad, ".sha256", k.SHA256)
	key.Digest = d
	if kc.checkTiers {
		if key.tier = c.s.tierName[k.Tier]; key.tier == nil {
			bad(".tier", "unknown tier %q (%s)", k.Tier, c.tierNames())
		}
	} else {
		key.meta.tierName = kc.str(k.Tier)
		if k.Tier == "" {
			bad(".tier", "required")
		}
	}
	if k.Created == "" {
		bad(".created", "required (e.g. 2026-01-31)")
	}
	if key.expires != 0 && key.expires < key.created {
		bad(".expires", "before created")
	}
	if key.expires == 0 && c.s.keyLifetime > 0 && key.created != 0 {
		key.expires = key.created + int64(c.s.keyLifetime/time.Second)
	}
	if c.s.personal && key.User == "" && key.Tenant == "" {
		bad("", "a key needs a tenant or a user")
	}
	if ok {
		c.s.keys[key.Digest] = key
	}
	// A rotated key's previous values stay valid until their own expiry.
	for j, pv := range k.Previous {
		pbad := func(field, format string, args ...any) {
			c.p.addf(e.src, fmt.Sprintf("%s.previous[%d]%s", e.path(), j, field), format, args...)
		}
		old := *key
		old.Rotated = true
		if old.Digest, ok = kc.digest(pbad, ".sha256", pv.SHA256); !ok {
			continue
		}
		if pv.Expires == "" {
			pbad(".expires", "required: until when the old value keeps working")
			continue
		}
		if until := unixSeconds(timestamp(pbad, ".expires", pv.Expires)); key.expires == 0 || until < key.expires {
			old.expires = until
		}
		c.s.keys[old.Digest] = &old
		key.meta.previous = append(key.meta.previous, Previous{Digest: old.Digest, Expires: unixTime(old.expires)})
	}
	if key.Tenant != "" {
		c.s.keyTenants[key.Tenant] = true
	}
	c.s.keyList = append(c.s.keyList, key)
	kc.where = append(kc.where, keyEntry{src: e.src, idx: e.idx})
}

func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// finish reports duplicate ids (found by sorting, which needs no map of a
// million ids).
func (kc *keyCompiler) finish() {
	list := kc.c.s.keyList
	order := make([]int32, len(list))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(list[a].ID, list[b].ID) })
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		if list[b].ID != "" && list[a].ID == list[b].ID {
			w := kc.where[b]
			kc.c.p.addf(w.src, w.path()+".id", "duplicate key id %q", list[b].ID)
		}
	}
	for i, k := range list {
		if k.User != "" && kc.c.s.tenantNamed(k.User) {
			w := kc.where[i]
			kc.c.p.addf(w.src, w.path()+".user", "%q is also a tenant's name or alias; users and tenants share "+
				"the tenant header, so a user id must not name a tenant: give the user another id", k.User)
		}
	}
	kc.where = nil
}

// CheckKeysFile validates a keys file on its own (no policy): strict
// decoding, ids, digests, times. Tier names are checked only by Load, which
// knows the policy's tiers.
func CheckKeysFile(path string) ([]*Key, error) {
	c := compiler{dir: filepath.Dir(path), digest: sha256.New(), s: &Snapshot{}}
	c.loadKeysFile(filepath.Base(path))
	kc := c.newKeyCompiler(false)
	c.eachFileKey(kc.add)
	kc.finish()
	if err := c.p.err(); err != nil {
		return nil, err
	}
	return c.s.keyList, nil
}

func (c *compiler) tierNames() string {
	names := make([]string, len(c.s.tiers))
	for i, t := range c.s.tiers {
		names[i] = t.name
	}
	return listing("tiers", names)
}

// listing names the defined things of a kind for an error message.
func listing(kind string, names []string) string {
	if len(names) == 0 {
		return "no " + kind + " are defined"
	}
	return kind + " are: " + strings.Join(names, ", ")
}

func (c *compiler) contexts(f *policyFile) {
	for i, cf := range f.Context {
		p := fmt.Sprintf("context[%d]", i)
		h := c.headerName(p+".header", cf.Header)
		if h == "" {
			continue
		}
		for _, prev := range c.s.contexts {
			if prev.header == h {
				c.errf(p+".header", "duplicate context header %q", h)
			}
		}
		if slices.Contains(c.s.CredentialHeaders(), h) {
			c.errf(p+".header", "%q is a credential header", h)
		}
		r := contextRule{header: h}
		for j, t := range cf.Tiers {
			if c.s.tierName[t] == nil {
				c.errf(fmt.Sprintf("%s.tiers[%d]", p, j), "unknown tier %q (%s)", t, c.tierNames())
			}
			if r.tiers == nil {
				r.tiers = map[string]bool{}
			}
			r.tiers[t] = true
		}
		c.s.contexts = append(c.s.contexts, r)
	}
}

func (c *compiler) routes(f *policyFile) {
	if len(f.Routes) == 0 {
		c.errf("routes", "define at least one route (a request no route matches is denied)")
	}
	for i, rf := range f.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		r := route{prefix: rf.Prefix, exact: rf.Path, public: rf.Public}
		switch {
		case (rf.Prefix == "") == (rf.Path == ""):
			c.errf(p, "set exactly one of prefix and path")
		default:
			pat := rf.Prefix + rf.Path
			canon, ok := routePath(pat)
			if !ok || strings.Contains(pat, "?") {
				c.errf(p, "%q is not a canonical path (must start with /; no dot-segments, //, query, "+
					"raw non-ASCII or control bytes, or escapes of unreserved or structural characters)", pat)
			}
			if rf.Prefix != "" {
				r.prefix = canon
			} else {
				r.exact = canon
			}
		}
		for j, m := range rf.Methods {
			if !methodToken(m) {
				c.errf(fmt.Sprintf("%s.methods[%d]", p, j), "want an upper-case method like GET, got %q", m)
			}
			r.methods = append(r.methods, m)
		}
		switch rf.Tenant {
		case "", "required":
		case "optional":
			r.tenant = tenantOptional
		default:
			c.errf(p+".tenant", "want required or optional, got %q", rf.Tenant)
		}
		switch {
		case rf.Public && rf.Tier != "":
			c.errf(p+".tier", "a public route has no tier")
		case rf.Public:
		case rf.Tier == "":
			c.errf(p+".tier", "required (or public: true)")
		default:
			if r.tier = c.s.tierName[rf.Tier]; r.tier == nil {
				c.errf(p+".tier", "unknown tier %q (%s)", rf.Tier, c.tierNames())
			}
		}
		c.s.routes = append(c.s.routes, r)
	}
}

func (c *compiler) upstream(f *policyFile) {
	u := f.UpstreamHeaders
	name := func(field string, v *string, def string) string {
		if v == nil {
			return def
		}
		if *v == "" {
			return "" // explicitly not sent
		}
		return c.headerName("upstream_headers."+field, *v)
	}
	c.s.up = upstream{
		tenant:     name("tenant", u.Tenant, DefaultTenantHeader),
		tenantKind: name("tenant_kind", u.TenantKind, DefaultTenantKindHeader),
		user:       name("user", u.User, DefaultUserHeader),
		tier:       name("tier", u.Tier, DefaultTierHeader),
		credential: name("credential", u.Credential, DefaultCredentialHeader),
		strip:      u.StripCredentials == nil || *u.StripCredentials,
	}
	seen := map[string]bool{}
	for _, h := range c.s.up.names() {
		if seen[h] {
			c.errf("upstream_headers", "header %q is used twice", h)
		}
		seen[h] = true
		if slices.Contains(c.s.ContextHeaders(), h) || slices.Contains(c.s.CredentialHeaders(), h) {
			c.errf("upstream_headers", "%q is also a context or credential header", h)
		}
	}
	c.s.alwaysRemove = c.s.ContextHeaders()
	if c.s.up.strip {
		for _, h := range c.s.CredentialHeaders() {
			c.s.alwaysRemove = appendNew(c.s.alwaysRemove, h)
		}
	}
}

// names returns the configured upstream header names.
func (u *upstream) names() []string {
	var out []string
	for _, h := range []string{u.tenant, u.tenantKind, u.user, u.tier, u.credential} {
		if h != "" {
			out = append(out, h)
		}
	}
	return out
}

func (c *compiler) limits(f *policyFile) {
	c.s.maxTokenBytes = DefaultMaxTokenBytes
	if n := f.Limits.MaxTokenBytes; n != 0 {
		if n < 1024 || n > 64<<10 {
			c.errf("limits.max_token_bytes", "want 1024 to 65536, got %d", n)
		}
		c.s.maxTokenBytes = n
	}
	c.s.skew = DefaultClockSkew
	if d := c.duration("limits.clock_skew", f.Limits.ClockSkew); d != 0 {
		if d > MaxClockSkew {
			c.errf("limits.clock_skew", "%s exceeds the %s maximum", d, MaxClockSkew)
		}
		c.s.skew = d
	}
}

// duration parses an optional duration field; "" is 0.
func (c *compiler) duration(path, v string) time.Duration {
	if v == "" {
		return 0
	}
	d, err := ParseDuration(v)
	if err != nil {
		c.errf(path, "%v", err)
	}
	return d
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mappingKeys returns the keys of the mapping at field of the document root,
// in file order.
func mappingKeys(root *yaml.Node, field string) []string {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	m, _ := child(n, field)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, m.Content[i].Value)
	}
	return out
}
