package policy

// This file compiles what the policy decides with: tenants, tiers and
// their requirements, context headers, routes and upstream headers.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/authn"
)

func (c *compiler) tenants(f *policyFile) {
	t := &c.s.tenants
	t.byName, t.aliases, t.personal = map[string]*tenant{}, map[string]string{}, f.PersonalTenants
	for _, name := range sortedKeys(f.Tenants) {
		tn := &tenant{name: name, members: map[string]string{}}
		for i, m := range f.Tenants[name].Members {
			if _, dup := tn.members[m.User]; dup {
				c.errf(fmt.Sprintf("tenants.%s.members[%d]", name, i), "%q is listed twice", m.User)
			}
			tn.members[m.User] = m.Role // the default role is filled in by directory()
		}
		t.byName[name] = tn
		t.aliases[name] = name
	}
	for _, name := range sortedKeys(f.Tenants) {
		for i, a := range f.Tenants[name].Aliases {
			if other, dup := t.aliases[a]; dup {
				c.errf(fmt.Sprintf("tenants.%s.aliases[%d]", name, i), "%q already names tenant %q", a, other)
				continue
			}
			t.aliases[a] = name
		}
	}
	for _, name := range sortedKeys(f.Tenants) {
		for i, m := range f.Tenants[name].Members {
			if other, ok := t.aliases[m.User]; ok {
				c.errf(fmt.Sprintf("tenants.%s.members[%d]", name, i), "member %q is also tenant %q's name or alias; "+
					"users and tenants share the tenant header, so a user id must not name a tenant", m.User, other)
			}
		}
	}
}

func (c *compiler) tiers(f *policyFile, issuers map[string]*authn.Issuer) {
	t := &c.s.tiers
	t.byName = map[string]*tier{}
	if len(f.Tiers) == 0 {
		c.errf("tiers", "define at least one tier")
		return
	}
	// Tiers rank in the order written, lowest first; a map loses that
	// order, so read it from the tree.
	for _, name := range c.src.Keys("tiers") {
		tr := &tier{name: name, rank: len(t.list) + 1, anyTenant: f.Tiers[name].AnyTenant, description: f.Tiers[name].Description}
		if d := tr.description; len(d) > 200 || strings.ContainsAny(d, "\n\r") {
			c.errf("tiers."+name+".description", "one line of at most 200 characters")
		}
		t.list = append(t.list, tr)
		t.byName[name] = tr
	}
	for _, tr := range t.list {
		tf, p := f.Tiers[tr.name], "tiers."+tr.name
		if len(tf.RequiresAny) == 0 {
			c.errf(p+".requires_any", "list at least one requirement")
		}
		for i, rf := range tf.RequiresAny {
			tr.reqs = append(tr.reqs, c.requirement(fmt.Sprintf("%s.requires_any[%d]", p, i), rf, issuers))
		}
	}
}

func (c *compiler) requirement(p string, rf requirementFile, issuers map[string]*authn.Issuer) requirement {
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
		if r.issuer = issuers[rf.JWT]; r.issuer == nil {
			c.errf(p+".jwt", "unknown issuer %q (%s)", rf.JWT, listing("issuers", sortedKeys(issuers)))
		}
	} else if len(rf.Scopes) > 0 || len(rf.Groups) > 0 || rf.TokenUse != "" {
		c.errf(p, "scopes, groups and token_use need jwt: <issuer>")
	}
	if rf.Key == "" && rf.JWT == "" {
		c.errf(p, "name a key (customer, superuser, any) or a jwt issuer, or both")
	}
	if len(rf.Groups) > 0 && r.issuer != nil && !r.issuer.HasGroups() {
		c.errf(p+".groups", "issuer %q has no claims.groups", rf.JWT)
	}
	r.scopes, r.groups, r.tokenUse = rf.Scopes, rf.Groups, rf.TokenUse
	return r
}

func (c *compiler) contexts(f *policyFile) {
	for i, cf := range f.Context {
		p := fmt.Sprintf("context[%d]", i)
		h := c.headerName(p+".header", cf.Header)
		if h == "" {
			continue
		}
		if slices.Contains(c.s.ContextHeaders(), h) {
			c.errf(p+".header", "duplicate context header %q", h)
		}
		if slices.Contains(c.s.CredentialHeaders(), h) {
			c.errf(p+".header", "%q is a credential header", h)
		}
		r := contextRule{header: h}
		for j, t := range cf.Tiers {
			if c.s.tiers.byName[t] == nil {
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
		if (rf.Prefix == "") == (rf.Path == "") {
			c.errf(p, "set exactly one of prefix and path")
		} else {
			c.routePattern(p, &r)
		}
		for j, h := range rf.Hosts {
			hp, ok := parseHostPattern(h)
			if !ok {
				c.errf(fmt.Sprintf("%s.hosts[%d]", p, j), "want a host name like api.example.com or *.example.com (no port, no scheme), got %q", h)
			}
			r.hosts = append(r.hosts, hp)
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
			if r.tier = c.s.tiers.byName[rf.Tier]; r.tier == nil {
				c.errf(p+".tier", "unknown tier %q (%s)", rf.Tier, c.tierNames())
			}
		}
		c.s.routes = append(c.s.routes, r)
	}
}

// routePattern holds a route's prefix or path to the rule requests are held
// to, and stores it in canonical form.
func (c *compiler) routePattern(p string, r *route) {
	pat := r.prefix + r.exact
	canon, ok := routePath(pat)
	if !ok || strings.Contains(pat, "?") {
		c.errf(p, "%q is not a canonical path (must start with /; no dot-segments, //, query, "+
			"raw non-ASCII or control bytes, or escapes of unreserved or structural characters)", pat)
	}
	if r.prefix != "" {
		r.prefix = canon
	} else {
		r.exact = canon
	}
}

func (c *compiler) upstream(f *policyFile) {
	u := f.UpstreamHeaders
	name := func(field string, v *string, def string) string {
		switch {
		case v == nil:
			return def
		case *v == "":
			return "" // explicitly not sent
		}
		return c.headerName("upstream_headers."+field, *v)
	}
	up := upstream{
		tenant:           name("tenant", u.Tenant, DefaultTenantHeader),
		tenantKind:       name("tenant_kind", u.TenantKind, DefaultTenantKindHeader),
		user:             name("user", u.User, DefaultUserHeader),
		tier:             name("tier", u.Tier, DefaultTierHeader),
		credential:       name("credential", u.Credential, DefaultCredentialHeader),
		decisionID:       name("decision_id", u.DecisionID, ""),
		role:             name("role", u.Role, ""),
		creditsRemaining: name("credits_remaining", u.CreditsRemaining, ""),
		strip:            u.StripCredentials == nil || *u.StripCredentials,
	}
	seen := map[string]bool{}
	for _, h := range up.names() {
		if seen[h] {
			c.errf("upstream_headers", "header %q is used twice", h)
		}
		seen[h] = true
		if slices.Contains(c.s.ContextHeaders(), h) || slices.Contains(c.s.CredentialHeaders(), h) {
			c.errf("upstream_headers", "%q is also a context or credential header", h)
		}
	}
	up.alwaysRemove = c.s.ContextHeaders()
	if up.creditsRemaining != "" {
		up.alwaysRemove = append(up.alwaysRemove, up.creditsRemaining)
	}
	if up.strip {
		for _, h := range c.s.CredentialHeaders() {
			up.alwaysRemove = appendNew(up.alwaysRemove, h)
		}
	}
	up.prepare()
	c.s.upstream = up
}
