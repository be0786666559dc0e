package policy

// This file holds the verify step: who the presented credentials say is
// calling.

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// caller is who the verified credentials say is calling, and, once
// granted, at which tier.
type caller struct {
	db     keys.Set     // the store's keys, pinned for the check (nil: none)
	store  bool         // the key came from the store
	key    *keys.APIKey // nil: no key presented (or not found)
	token  *authn.Token // nil: no token presented
	keyID  string       // the presented key's id, when it was found (even refused)
	issuer string       // the verified token's issuer id
	user   string
	tier   *tier
}

// verify checks the presented key and token. On a refusal the caller still
// names what was identified (the key's id), for the deny.
func (s *Snapshot) verify(ctx context.Context, tc *authn.Tokens, cr authn.Credentials, st *storeView, now time.Time) (*caller, reason.Code) {
	c := &caller{db: st.keys}
	if cr.Key != "" {
		k, found, r := authn.CheckKey(s.keys, cr.Key, now)
		if !found && st.keys != nil && s.store != nil && keys.WellFormed(cr.Key) {
			k, found, r = authn.CheckKey(st.keys, cr.Key, now)
			c.store = found
			if !found && !st.loaded {
				r = reason.StoreUnavailable // it may be a store key not loaded yet
			}
		}
		if found {
			c.keyID = k.ID
		}
		if r != "" {
			return c, r
		}
		c.key, c.user = &k, k.User
	}
	if cr.Token != "" {
		t, r := s.verifier.Verify(ctx, tc, cr.Token, now)
		if r != "" {
			return c, r
		}
		c.token, c.issuer = t, t.Issuer().ID()
		if c.user == "" {
			c.user = t.User()
		}
	}
	return c, ""
}

// deny returns the deny r with what the caller's credentials identified.
func (c *caller) deny(r reason.Code) Decision {
	d := Deny(r)
	d.Credential, d.User, d.Issuer, d.FromStore = c.keyID, c.user, c.issuer, c.store
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	return d
}
