package policy

// This file compiles what authn needs of a policy: where credentials are
// read, the trusted issuers with their key sets, and the token limits.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
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
		if in.Cognito != nil {
			c.cognito(p, &in)
		}
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
		if in.Discovery || in.JWKS.Discovery {
			cfg.Source = c.discovered(p, in)
		} else {
			cfg.Source = c.jwks(p+".jwks", in.JWKS)
		}
		out[id] = authn.NewIssuer(cfg)
	}
	return out
}

var (
	cognitoRegionRe = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	cognitoPoolRe   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]_[0-9A-Za-z]+$`)
)

// cognito derives an Amazon Cognito user pool's issuer, whose key set is
// then discovered.
func (c *compiler) cognito(p string, in *issuerFile) {
	cg := in.Cognito
	if !cognitoRegionRe.MatchString(cg.Region) {
		c.errf(p+".cognito.region", "want an AWS region like eu-west-1, got %q", cg.Region)
		return
	}
	if !cognitoPoolRe.MatchString(cg.UserPoolID) || !strings.HasPrefix(cg.UserPoolID, cg.Region+"_") {
		c.errf(p+".cognito.user_pool_id", "want the pool's id, <region>_<id> like %s_AbC123xyz, got %q", cg.Region, cg.UserPoolID)
		return
	}
	derived := "https://cognito-idp." + cg.Region + ".amazonaws.com/" + cg.UserPoolID
	if in.Issuer != "" && in.Issuer != derived {
		c.errf(p+".issuer", "%q is not the pool's issuer %q: give one of issuer and cognito", in.Issuer, derived)
	}
	in.Issuer, in.Discovery = derived, true
}

// discovered compiles a key set found by OpenID Connect discovery from the
// issuer's own address.
func (c *compiler) discovered(p string, in issuerFile) cache.Source {
	j := in.JWKS
	if j.URI != "" || j.File != "" || j.Keys != nil {
		c.errf(p+".jwks", "discovery finds the key set: give no uri, file or keys with it")
		return nil
	}
	refresh := c.duration(p+".jwks.refresh", j.Refresh)
	c.minRefresh(p+".jwks.refresh", refresh)
	if in.Issuer == "" {
		return nil // reported by the caller
	}
	u, err := url.Parse(in.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		c.errf(p+".issuer", "discovery needs the issuer to be an https URL without query or fragment, got %q", cache.Redacted(in.Issuer))
		return nil
	}
	return c.shareRemote(func(r *cache.Remote) bool { return r.IsDiscovered(in.Issuer, refresh) },
		func(reg *cache.Registry) *cache.Remote { return reg.Discovered(in.Issuer, refresh) })
}

func (c *compiler) minRefresh(p string, refresh time.Duration) {
	if refresh != 0 && refresh < time.Minute {
		c.errf(p, "refresh %s is below the 1m minimum", refresh)
	}
}

// shareRemote returns the snapshot's Remote that same accepts, or the one
// get takes from the registry, recorded for the snapshot: issuers sharing a
// key set share one Remote, and across reloads the registry shares them
// once this snapshot is committed.
func (c *compiler) shareRemote(same func(*cache.Remote) bool, get func(*cache.Registry) *cache.Remote) *cache.Remote {
	for _, r := range c.s.remotes {
		if same(r) {
			return r
		}
	}
	reg := c.opts.JWKS
	if reg == nil {
		reg = cache.NewRegistry(cache.RemoteOptions{}, false)
	}
	r := get(reg)
	c.s.remotes = append(c.s.remotes, r)
	return r
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
	c.minRefresh(p+".refresh", refresh)
	return c.shareRemote(func(r *cache.Remote) bool { return r.Is(uri, refresh) },
		func(reg *cache.Registry) *cache.Remote { return reg.Remote(uri, refresh) })
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
			c.errf("limits.clock_skew", "%s exceeds the maximum of 5m", strings.TrimSpace(f.Limits.ClockSkew))
		}
		skew = d
	}
	return maxTokenBytes, skew
}
