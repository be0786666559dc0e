package authn

// This file holds the trusted token issuers.

import (
	"slices"

	"github.com/portcullis/portcullis/cache"
)

// supported is every JWS algorithm an issuer may allow. "none" and the HMAC
// family are never allowed: an ext_authz server holds only public keys.
var supported = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// SupportedAlgorithms returns the JWS algorithms an issuer may allow (a
// copy).
func SupportedAlgorithms() []string { return slices.Clone(supported) }

// IssuerConfig is one trusted issuer, as a policy compiles it.
type IssuerConfig struct {
	ID         string       // the policy's name for the issuer
	Issuer     string       // the exact "iss" of its tokens
	Source     cache.Source // its JWK set
	Audiences  []string     // accepted "aud" values (or Cognito client ids)
	Algorithms []string     // allowed JWS algorithms, a subset of SupportedAlgorithms
	RequireKID bool         // a token without "kid" is refused

	UserClaims   []string // claims naming the user, first present wins
	TenantClaims []string // claims naming the tenant
	GroupClaims  []string // claims listing groups
}

// Issuer is one trusted token issuer. It is immutable and safe for
// concurrent use.
type Issuer struct{ cfg IssuerConfig }

// NewIssuer returns the Issuer cfg describes (its lists copied).
func NewIssuer(cfg IssuerConfig) *Issuer {
	cfg.Audiences = slices.Clone(cfg.Audiences)
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	cfg.UserClaims = slices.Clone(cfg.UserClaims)
	cfg.TenantClaims = slices.Clone(cfg.TenantClaims)
	cfg.GroupClaims = slices.Clone(cfg.GroupClaims)
	return &Issuer{cfg: cfg}
}

// ID returns the policy's name for the issuer.
func (is *Issuer) ID() string { return is.cfg.ID }

// Config returns a copy of the issuer's configuration.
func (is *Issuer) Config() IssuerConfig { return NewIssuer(is.cfg).cfg }

// HasGroups reports whether the issuer's tokens name groups.
func (is *Issuer) HasGroups() bool { return len(is.cfg.GroupClaims) > 0 }
