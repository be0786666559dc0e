package policy

// This file holds the grant step: the tier table and the requirements a
// caller's credentials must meet for each tier.

import "github.com/portcullis/portcullis/authn"

// tier is one tier of the policy.
type tier struct {
	name        string
	rank        int // 1 = lowest
	anyTenant   bool
	description string
	reqs        []requirement
}

// tierTable holds the tiers, lowest first.
type tierTable struct {
	list   []*tier
	byName map[string]*tier
}

type keyNeed int

const (
	keyNone keyNeed = iota
	keyCustomer
	keySuperuser
	keyAny
)

// requirement is one way of meeting a tier: a kind of key, a token of an
// issuer with scopes, groups and a token_use, or both.
type requirement struct {
	key      keyNeed
	issuer   *authn.Issuer
	scopes   []string
	groups   []string
	tokenUse string
}

// grant returns the highest tier the caller's credentials meet, or nil.
func (s *Snapshot) grant(c *caller) *tier {
	for i := len(s.tiers.list) - 1; i >= 0; i-- {
		t := s.tiers.list[i]
		for j := range t.reqs {
			if t.reqs[j].met(c, t, &s.tiers) {
				return t
			}
		}
	}
	return nil
}

func (r *requirement) met(c *caller, t *tier, tiers *tierTable) bool {
	k := c.apiKey()
	switch r.key {
	case keyCustomer:
		if k == nil || k.Superuser {
			return false
		}
	case keySuperuser:
		if k == nil || !k.Superuser {
			return false
		}
	case keyAny:
		if k == nil {
			return false
		}
	}
	if r.key != keyNone {
		// A key never reaches above its own tier (nor a key whose tier the
		// policy does not know).
		if kt := tiers.byName[k.Tier]; kt == nil || kt.rank < t.rank {
			return false
		}
	}
	if r.issuer == nil {
		return true
	}
	tok := c.token
	if tok == nil || tok.Issuer() != r.issuer {
		return false
	}
	for _, sc := range r.scopes {
		if !tok.HasScope(sc) {
			return false
		}
	}
	if len(r.groups) > 0 && !anyGroup(tok, r.groups) {
		return false
	}
	return r.tokenUse == "" || tok.Use() == r.tokenUse
}

func anyGroup(tok *authn.Token, groups []string) bool {
	for _, g := range groups {
		if tok.InGroup(g) {
			return true
		}
	}
	return false
}
