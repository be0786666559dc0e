// Package demo reads an example's demo credentials (demo-credentials.json:
// plaintext keys, issuers' private keys, token templates, management
// tokens) and turns the placeholders of policy tests and examples
// ("key:<id>", "token:<name>", "token:<name>@-2h") into real keys and
// freshly minted tokens.
//
// It owns the demo-credentials format and minting. It must never be used
// on a real deployment's secrets: everything it reads is demo-only and
// committed beside the examples.
package demo

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/portcullis/portcullis/internal/source"
)

// FileName is the demo credentials' file name in an example's folder.
const FileName = "demo-credentials.json"

// Lifetime is how long a minted placeholder token is valid.
const Lifetime = time.Hour

// Credentials is one demo-credentials.json.
type Credentials struct {
	Path    string            `json:"-"`
	Keys    map[string]string `json:"keys"`
	Issuers map[string]struct {
		Kid           string `json:"kid"`
		Alg           string `json:"alg"`
		PrivateKeyPEM string `json:"private_key_pem"`
	} `json:"issuers"`
	Tokens map[string]struct {
		Issuer string         `json:"issuer"`
		Claims map[string]any `json:"claims"`
	} `json:"tokens"`
	// ManagementTokens are the plaintexts of the example's management
	// tokens for the key-management API, by id.
	ManagementTokens map[string]string `json:"management_tokens"`
}

// Load reads the demo credentials at path.
func Load(path string) (*Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Credentials{Path: path}
	if err := source.DecodeJSON(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadDir reads dir/demo-credentials.json.
func LoadDir(dir string) (*Credentials, error) { return Load(filepath.Join(dir, FileName)) }

// Key returns the plaintext of demo key id.
func (c *Credentials) Key(id string) (string, error) {
	k, ok := c.Keys[id]
	if !ok {
		return "", fmt.Errorf("%s has no key %q (it has %s)", c.Path, id, names(c.Keys))
	}
	return k, nil
}

// Signer returns the private key, algorithm and kid of demo issuer id.
func (c *Credentials) Signer(id string) (crypto.Signer, string, string, error) {
	is, ok := c.Issuers[id]
	if !ok {
		return nil, "", "", fmt.Errorf("%s has no issuer %q", c.Path, id)
	}
	blk, _ := pem.Decode([]byte(is.PrivateKeyPEM))
	if blk == nil {
		return nil, "", "", fmt.Errorf("%s: issuer %s: no PEM block", c.Path, id)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: issuer %s: %w", c.Path, id, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, "", "", fmt.Errorf("%s: issuer %s: the key cannot sign", c.Path, id)
	}
	alg := is.Alg
	if alg == "" {
		alg = "RS256"
	}
	return s, alg, is.Kid, nil
}

// Mint mints the named demo token, valid from now-1m until now+lifetime,
// with claims overridden by extra (a nil value deletes a claim).
func (c *Credentials) Mint(name string, now time.Time, lifetime time.Duration, extra map[string]any) (string, error) {
	return c.mint(name, now.Add(-time.Minute), now.Add(lifetime), extra)
}

func (c *Credentials) mint(name string, from, until time.Time, extra map[string]any) (string, error) {
	tk, ok := c.Tokens[name]
	if !ok {
		return "", fmt.Errorf("%s has no token %q (it has %s)", c.Path, name, names(c.Tokens))
	}
	claims := maps.Clone(tk.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["iat"], claims["nbf"], claims["exp"] = from.Unix(), from.Unix(), until.Unix()
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	key, alg, kid, err := c.Signer(tk.Issuer)
	if err != nil {
		return "", err
	}
	return Sign(key, alg, map[string]any{"kid": kid}, claims)
}

// Expand turns the placeholders in a header value into real demo
// credentials: "key:<id>" the demo key, "token:<name>" a token minted now
// and valid for Lifetime; "token:<name>@-2h" one whose exp was two hours
// before now, "token:<name>@+1h" one whose nbf is an hour after now. A
// placeholder may follow a scheme ("Bearer token:alice"); a comma-joined
// list (as Envoy joins repeated headers) is expanded item by item.
// Anything else is returned as is.
func (c *Credentials) Expand(v string, now time.Time) (string, error) {
	if strings.Contains(v, ",") {
		parts := strings.Split(v, ",")
		for i, p := range parts {
			var err error
			if parts[i], err = c.Expand(p, now); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, ","), nil
	}
	prefix := ""
	if p, rest, ok := strings.Cut(v, " "); ok {
		prefix, v = p+" ", rest
	}
	var err error
	switch {
	case strings.HasPrefix(v, "key:"):
		v, err = c.Key(strings.TrimPrefix(v, "key:"))
	case strings.HasPrefix(v, "token:"):
		v, err = c.token(strings.TrimPrefix(v, "token:"), now)
	}
	return prefix + v, err
}

// IsPlaceholder reports whether v holds a placeholder Expand would replace.
func IsPlaceholder(v string) bool {
	for _, p := range strings.Split(v, ",") {
		if _, rest, ok := strings.Cut(p, " "); ok {
			p = rest
		}
		if strings.HasPrefix(p, "key:") || strings.HasPrefix(p, "token:") {
			return true
		}
	}
	return false
}

func (c *Credentials) token(spec string, now time.Time) (string, error) {
	name, at, shifted := strings.Cut(spec, "@")
	if !shifted {
		return c.Mint(name, now, Lifetime, nil)
	}
	d, err := time.ParseDuration(at)
	if err != nil || (at[0] != '-' && at[0] != '+') {
		return "", fmt.Errorf("token:%s: want @-<duration> (expired that long ago) or @+<duration> (valid from then), like @-2h", spec)
	}
	if d < 0 { // expired -d ago, after a lifetime of Lifetime
		return c.mint(name, now.Add(d-Lifetime), now.Add(d), nil)
	}
	return c.mint(name, now.Add(d), now.Add(d+Lifetime), nil)
}

// Sign makes a compact JWS of claims with key and alg, with the given extra
// protected header fields (a field whose value is nil is omitted).
func Sign(key any, alg string, header map[string]any, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	for k, v := range header {
		if v == nil {
			continue
		}
		if err := h.Set(k, v); err != nil {
			return "", err
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(alg), key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return string(out), nil
}

func names[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
