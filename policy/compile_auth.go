package policy

// This file compiles what authn needs of a policy: where credentials are
// read, the trusted issuers with their key sets, and the token limits.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/cache"
)

func (c *compiler) credentials(f *policyFile) {
	cr := f.Credentials
	if cr.APIKey == nil && cr.JWT == nil {
		c.errf("credentials", "configure at least one of credentials.api_key and credentials.jwt")
	}
	var cfg authn.ExtractorConfig
	if k := cr.APIKey; k != nil {
		for i, h := range k.Headers {
			if n := c.headerName(fmt.Sprintf("credentials.api_key.headers[%d]", i), h); n != "" {
				cfg.APIKeyHeaders = appendNew(cfg.APIKeyHeaders, n)
			}
		}
		cfg.BearerKeys = k.Bearer
		if len(k.Headers) == 0 && !k.Bearer {
			c.errf("credentials.api_key", "set headers (e.g. [x-api-key]) or bearer: true")
		}
		if slices.Contains(cfg.APIKeyHeaders, "authorization") {
			c.errf("credentials.api_key.headers", "use bearer: true to read keys from authorization")
		}
	}
	if j := cr.JWT; j != nil {
		for i, h := range j.Headers {
			if n := c.headerName(fmt.Sprintf("credentials.jwt.headers[%d]", i), h); n != "" {
				cfg.JWTHeaders = appendNew(cfg.JWTHeaders, n)
				if slices.Contains(cfg.APIKeyHeaders, n) {
					c.errf(fmt.Sprintf("credentials.jwt.headers[%d]", i), "%q is also an API key header", n)
				}
			}
		}
		if len(j.Headers) == 0 {
			cfg.JWTHeaders = []string{"authorization"}
		}
		cfg.None = j.None
	}
	c.s.creds = authn.NewExtractor(cfg)
}

// issuers compiles the trusted issuers, by the policy's id for each.
func (c *compiler) issuers(f *policyFile) map[string]*authn.Issuer {
	out := map[string]*authn.Issuer{}
	byIss := map[string]string{}
	if len(f.Issuers) > 0 && f.Credentials.JWT == nil && (f.KeysAPI == nil || f.KeysAPI.SelfService == nil) {
		c.errf("issuers", "issuers are configured but credentials.jwt is not, so no token is ever read")
	}
	for _, id := range sortedKeys(f.Issuers) {
		in, p := f.Issuers[id], "issuers."+id
		cfg := authn.IssuerConfig{ID: id, Issuer: in.Issuer, Audiences: in.Audiences, RequireKID: in.RequireKID == nil || *in.RequireKID,
			UserClaims: orDefault(in.Claims.User, "sub"), TenantClaims: in.Claims.Tenant, GroupClaims: in.Claims.Groups}
		if in.Issuer == "" {
			c.errf(p+".issuer", "required: the exact \"iss\" claim of this issuer's tokens")
		} else if other, dup := byIss[in.Issuer]; dup {
			c.errf(p+".issuer", "issuer %q is also issuer %q's", in.Issuer, other)
		}
		byIss[in.Issuer] = id
		if len(in.Audiences) == 0 {
			c.errf(p+".audiences", "required: the accepted \"aud\" values (or Cognito client ids)")
		}
		cfg.Algorithms = c.algorithms(p+".algorithms", in.Algorithms)
		cfg.Source = c.jwks(p+".jwks", in.JWKS)
		out[id] = authn.NewIssuer(cfg)
	}
	return out
}

func (c *compiler) algorithms(p string, algs []string) []string {
	if len(algs) == 0 {
		c.errf(p, "required: e.g. [RS256]")
	}
	supported := authn.SupportedAlgorithms()
	var out []string
	for i, a := range algs {
		switch {
		case slices.Contains(supported, a):
			out = append(out, a)
		case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
			c.errf(fmt.Sprintf("%s[%d]", p, i), "%q is never allowed (only public-key algorithms: %s)", a, strings.Join(supported, ", "))
		default:
			c.errf(fmt.Sprintf("%s[%d]", p, i), "unknown algorithm %q (want one of %s)", a, strings.Join(supported, ", "))
		}
	}
	return out
}

func orDefault(l []string, d string) []string {
	if len(l) == 0 {
		return []string{d}
	}
	return l
}

// jwks compiles an issuer's key set: a remote one (shared across reloads
// through the registry), a file, or inline keys.
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
		return c.remoteJWKS(p, j.URI, refresh)
	case j.File != "":
		path := c.rel(j.File)
		data, err := c.readFile(path)
		if err != nil {
			c.errf(p+".file", "cannot read JWK set: %v", err)
			return nil
		}
		c.s.meta.files = append(c.s.meta.files, path)
		return c.staticJWKS(p+".file", path+": ", data)
	default:
		data, err := json.Marshal(map[string]any{"keys": j.Keys})
		if err != nil {
			c.errf(p+".keys", "cannot encode inline keys: %v", err)
			return nil
		}
		return c.staticJWKS(p+".keys", "", data)
	}
}

func (c *compiler) staticJWKS(p, prefix string, data []byte) cache.Source {
	set, err := cache.ParseKeySet(data)
	if err != nil {
		c.errf(p, "%s%v", prefix, err)
		return nil
	}
	return cache.NewStatic(set)
}

func (c *compiler) remoteJWKS(p, uri string, refresh time.Duration) cache.Source {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		c.errf(p+".uri", "want an absolute http(s) URL, got %q", cache.Redacted(uri))
		return nil
	}
	if refresh != 0 && refresh < time.Minute {
		c.errf(p+".refresh", "refresh %s is below the 1m minimum", refresh)
	}
	// Issuers sharing a key set share one Remote; across reloads the
	// registry shares them once this snapshot is committed.
	for _, r := range c.s.remotes {
		if r.Is(uri, refresh) {
			return r
		}
	}
	reg := c.opts.JWKS
	if reg == nil {
		reg = cache.NewRegistry(cache.RemoteOptions{}, false)
	}
	r := reg.Remote(uri, refresh)
	c.s.remotes = append(c.s.remotes, r)
	return r
}

func (c *compiler) limits(f *policyFile) (maxTokenBytes int, skew time.Duration) {
	maxTokenBytes = DefaultMaxTokenBytes
	if n := f.Limits.MaxTokenBytes; n != 0 {
		if n < 1024 || n > 64<<10 {
			c.errf("limits.max_token_bytes", "want 1024 to 65536, got %d", n)
		}
		maxTokenBytes = n
	}
	skew = DefaultClockSkew
	if d := c.duration("limits.clock_skew", f.Limits.ClockSkew); d != 0 {
		if d > MaxClockSkew {
			c.errf("limits.clock_skew", "%s exceeds the %s maximum", d, MaxClockSkew)
		}
		skew = d
	}
	return maxTokenBytes, skew
}
