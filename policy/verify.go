package policy

// This file holds the verify step: who the presented credentials say is
// calling.

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// caller is who the verified credentials say is calling, and, once
// granted, at which tier.
type caller struct {
	db     keys.Set      // the store's keys, pinned for the check (nil: none)
	dir    directory.Set // the store's directory, pinned for the check (nil: none)
	store  bool          // the key came from the store
	found  keys.APIKey   // the verified key, when hasKey (see apiKey)
	hasKey bool
	token  *authn.Token // nil: no token presented
	keyID  string       // the presented key's id, when it was found (even refused)
	issuer string       // the verified token's issuer id
	user   string
	tier   *tier
	role   *role // the caller's role in the tenant it acts for (nil: none)
}

// verify checks the presented key and token into c. On a refusal c still
// names what was identified (the key's id), for the deny.
func (s *Snapshot) verify(ctx context.Context, tc *authn.Tokens, cr authn.Credentials, st *storeView, now time.Time, c *caller) reason.Code {
	c.db, c.dir = st.keys, st.dir
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
			return r
		}
		c.found, c.hasKey, c.user = k, true, k.User
	}
	if cr.Token != "" {
		t, r := s.verifier.Verify(ctx, tc, cr.Token, now)
		if r != "" {
			return r
		}
		c.token, c.issuer = t, t.Issuer().ID()
		if c.user == "" {
			c.user = t.User()
		}
	}
	return ""
}

// apiKey returns the verified key, nil when none was presented or it was
// refused. The pointer is into c: callers must not keep it.
func (c *caller) apiKey() *keys.APIKey {
	if !c.hasKey {
		return nil
	}
	return &c.found
}

// keyTenant returns the tenant the verified key is bound to ("" for none).
func (c *caller) keyTenant() string {
	if !c.hasKey {
		return ""
	}
	return c.found.Tenant
}

// deny returns the deny r with what the caller's credentials identified.
func (c *caller) deny(r reason.Code) Decision {
	d := Deny(r)
	d.Credential, d.User, d.Issuer, d.FromStore = c.keyID, c.user, c.issuer, c.store
	if c.role != nil {
		d.Role = c.role.name
	}
	if c.tier != nil {
		d.Tier = c.tier.name
	}
	return d
}
