package policy

// This file holds the headers step: the upstream header names, and the
// allow decision that sets or removes each of them.

import "github.com/portcullis/portcullis/reason"

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
	decisionID                                 string // "" unless configured
	strip                                      bool
	alwaysRemove                               []string
}

// names returns the configured upstream header names.
func (u *upstream) names() []string {
	var out []string
	for _, h := range []string{u.tenant, u.tenantKind, u.user, u.tier, u.credential, u.decisionID} {
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
	if c.key != nil {
		d.Credential, d.FromStore = c.key.ID, c.store
	}
	u := &s.upstream
	d.SetHeaders = make([]Header, 0, 5)
	d.RemoveHeaders = make([]string, 0, len(u.alwaysRemove)+5)
	d.RemoveHeaders = append(d.RemoveHeaders, u.alwaysRemove...)
	for _, h := range [...]Header{
		{u.tenant, d.Tenant}, {u.tenantKind, d.TenantKind}, {u.user, d.User},
		{u.tier, d.Tier}, {u.credential, d.Credential},
	} {
		switch {
		case h.Name == "":
		case h.Value == "":
			d.RemoveHeaders = append(d.RemoveHeaders, h.Name)
		default:
			d.SetHeaders = append(d.SetHeaders, h)
		}
	}
	return d
}
