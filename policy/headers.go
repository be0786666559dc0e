package policy

// This file holds the headers step: the upstream header names, and the
// allow decision that sets or removes each of them.

import (
	"slices"

	"github.com/portcullis/portcullis/reason"
)

// Default upstream header names.
const (
	DefaultTenantHeader     = "x-tenant-id"
	DefaultTenantKindHeader = "x-tenant-kind"
	DefaultUserHeader       = "x-user-id"
	DefaultTierHeader       = "x-auth-tier"
	DefaultCredentialHeader = "x-credential-id"
)

// upstream holds the names of the headers the upstream receives ("" = not
// sent) and what an allow always removes: the context headers, and the
// credential headers when they are stripped.
type upstream struct {
	tenant, tenantKind, user, tier, credential string
	role                                       string // "" unless configured
	creditsRemaining                           string // "" unless configured; set only by a metered allow, else removed
	decisionID                                 string // "" unless configured
	strip                                      bool
	alwaysRemove                               []string
	// removes holds what an allow removes, by which of the six identity
	// headers have no value (bit i: identity()[i]), made once so that an
	// allow shares one: alwaysRemove, then those headers' names.
	removes [1 << 6][]string
}

// identity returns the six identity headers with their values in d, in
// the order of removes' bits.
func (u *upstream) identity(d *Decision) [6]Header {
	return [...]Header{{u.tenant, d.Tenant}, {u.tenantKind, d.TenantKind}, {u.user, d.User}, {u.tier, d.Tier},
		{u.credential, d.Credential}, {u.role, d.Role}}
}

// prepare fills removes, once alwaysRemove and the names are set.
func (u *upstream) prepare() {
	names := u.identity(&Decision{})
	for mask := range u.removes {
		list := slices.Clone(u.alwaysRemove)
		for i, h := range names {
			if mask&(1<<i) != 0 && h.Name != "" {
				list = append(list, h.Name)
			}
		}
		u.removes[mask] = list[:len(list):len(list)] // shared: an append copies
	}
}

// names returns the configured upstream header names.
func (u *upstream) names() []string {
	var out []string
	for _, h := range []string{u.tenant, u.tenantKind, u.user, u.tier, u.credential, u.role, u.creditsRemaining, u.decisionID} {
		if h != "" {
			out = append(out, h)
		}
	}
	return out
}

// allow builds the allow decision: every upstream header is set when it has
// a value and removed otherwise; context headers (and credentials, when
// stripped) are always removed. No name is in both lists.
func (s *Snapshot) allow(r reason.Code, c *caller, tenant, kind string) Decision {
	d := Decision{Allow: true, Reason: r, Tenant: tenant, TenantKind: kind, User: c.user, Issuer: c.issuer}
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	if c.role != nil {
		d.Role = c.role.name
	}
	if k := c.apiKey(); k != nil {
		d.Credential, d.FromStore = k.ID, c.store
	}
	u := &s.upstream
	d.SetHeaders = make([]Header, 0, 6)
	mask := 0
	for i, h := range u.identity(&d) {
		switch {
		case h.Name == "":
		case h.Value == "":
			mask |= 1 << i
		default:
			d.SetHeaders = append(d.SetHeaders, h)
		}
	}
	d.RemoveHeaders = u.removes[mask]
	return d
}
