package policy

// This file holds Load: reading a policy and the files it names, and the
// compiler that turns them into a Snapshot, step by step (compile_*.go),
// reporting every problem at once.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/source"
)

// Defaults applied when the policy leaves a setting out.
const (
	DefaultMaxTokenBytes = 8 << 10
	DefaultClockSkew     = 60 * time.Second
	MaxClockSkew         = 5 * time.Minute
)

// LoadOptions are the outside things a load needs.
type LoadOptions struct {
	// JWKS shares remote key sets between successive loads (each is shared
	// and started only once the snapshot is committed to the registry).
	// Nil: remote sets are fetched on first use and never refreshed in the
	// background (right for one-off commands such as check and validate).
	JWKS *cache.Registry
	// KeysFile, when set, is read instead of the policy's keys_file (to
	// validate a keys file about to replace it).
	KeysFile string
}

// Load reads, validates and compiles the policy at path (YAML or JSON) and
// the keys and JWKS files it names (relative paths are relative to the
// policy's folder). The error lists every problem found, one per line, as
// "file:line: field: what is wrong". It is safe to call concurrently, and
// starts nothing: a policy that fails to load leaves no trace.
func Load(path string, opts LoadOptions) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	digest := sha256.New()
	digest.Write(data)
	var f policyFile
	src, err := source.Decode(path, data, &f)
	if src == nil {
		return nil, err
	}
	c := &compiler{src: src, dir: filepath.Dir(path), opts: opts, digest: digest,
		s: &Snapshot{meta: meta{files: []string{path}}}}
	c.p.Add(err)
	c.compile(&f)
	if err := c.p.Err(); err != nil {
		return nil, err
	}
	c.s.meta.version = hex.EncodeToString(digest.Sum(nil))[:12]
	if err := c.warn.Err(); err != nil {
		c.s.meta.warnings = strings.Split(err.Error(), "\n")
	}
	return c.s, nil
}

// compiler holds one load in progress.
type compiler struct {
	src    *source.File
	dir    string
	opts   LoadOptions
	p      source.Problems
	warn   source.Problems // what loads but will not work as its author meant
	s      *Snapshot
	digest hash.Hash // of every file read, for Snapshot.Version
}

func (c *compiler) compile(f *policyFile) {
	if f.Version != 1 {
		c.errf("version", "want version: 1, got %d", f.Version)
	}
	c.credentials(f)
	issuers := c.issuers(f)
	c.tenants(f)
	c.tiers(f, issuers)
	c.directory(f)
	c.plans(f)
	c.apiKeys(f)
	c.contexts(f)
	c.routes(f)
	c.upstream(f)
	c.credits(f)
	c.store(f, issuers)
	maxBytes, skew := c.limits(f)
	list := make([]*authn.Issuer, 0, len(issuers))
	for _, id := range sortedKeys(issuers) {
		list = append(list, issuers[id])
	}
	c.s.verifier = authn.NewVerifier(list, maxBytes, skew)
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

func (c *compiler) errf(path, format string, args ...any) { c.p.Addf(c.src, path, format, args...) }

func (c *compiler) rel(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
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

// duration parses an optional duration field; "" is 0.
func (c *compiler) duration(path, v string) time.Duration {
	if v == "" {
		return 0
	}
	d, err := source.ParseDuration(v)
	if err != nil {
		c.errf(path, "%v", err)
	}
	return d
}

func (c *compiler) tierNames() string { return listing("tiers", c.s.Tiers()) }

// listing names the defined things of a kind for an error message.
func listing(kind string, names []string) string {
	if len(names) == 0 {
		return "no " + kind + " are defined"
	}
	return kind + " are: " + strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}
