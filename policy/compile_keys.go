package policy

// This file compiles the policy's API keys (inline, and its keys file) into
// the key index, checking each entry against the policy: its tier, its
// tenant (bound by canonical name), its user (never a tenant's name).

import (
	"os"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

// keyCompiler checks and indexes key entries one at a time.
// It keeps what finish needs of every key compactly (a million keys load
// without a million of anything the collector must mark): the ids in one
// arena, the users only where there is one; where a key was written follows
// from its number (inline keys first, then the keys file's).
type keyCompiler struct {
	c       *compiler
	b       *keys.IndexBuilder
	ids     keys.IDs
	users   []keyUser
	inline  int          // how many keys the policy lists inline
	fileSrc *source.File // the keys file, once an entry of it was read
}

// keyUser is the user of key number i, and the tenant it is bound to.
type keyUser struct {
	i      int
	user   string
	tenant string // canonical
}

// at says where key number i was written.
func (kc *keyCompiler) at(i int) keys.At {
	if i < kc.inline {
		return keys.At{File: kc.c.src, Index: i}
	}
	return keys.At{File: kc.fileSrc, Index: i - kc.inline}
}

func (c *compiler) apiKeys(f *policyFile) {
	c.s.meta.keyLimit = f.KeyLimit
	c.s.meta.keyLifetime = c.duration("key_lifetime", f.KeyLifetime)
	if f.KeyLimit < 0 {
		c.errf("key_limit", "must not be negative")
	}
	file := f.KeysFile
	if c.opts.KeysFile != "" {
		file = c.opts.KeysFile
	}
	path := ""
	if file != "" {
		path = c.rel(file)
	}
	kc := &keyCompiler{c: c, b: keys.NewIndexBuilder(len(f.Keys) + keys.SizeHint(path)), inline: len(f.Keys)}
	for i := range f.Keys {
		at := keys.At{File: c.src, Index: i}
		kc.add(f.Keys[i].Entry(&c.p, at), at)
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			c.errf("keys_file", "cannot read keys file: %v", err)
		} else if keys.ReadFile(path, &c.p, keys.ReadOptions{Digest: c.digest}, kc.add) {
			c.s.meta.files = append(c.s.meta.files, path)
			c.s.meta.keysFile = path
		}
	}
	c.s.keys = kc.b.Build()
	kc.finish(f)
}

func (kc *keyCompiler) add(e *keys.Entry, at keys.At) {
	c := kc.c
	if at.File != c.src {
		kc.fileSrc = at.File
	}
	if e.Tier != "" && c.s.tiers.byName[e.Tier] == nil {
		at.Problem(&c.p, ".tier", "unknown tier %q (%s)", e.Tier, c.tierNames())
	}
	if c.s.tenants.personal && e.User == "" && e.Tenant == "" {
		at.Problem(&c.p, "", "a key needs a tenant or a user")
	}
	// A key is bound to its tenant's canonical name, never an alias: the
	// tenant header carries one name per tenant.
	if e.Digest != (keys.Digest{}) {
		if taken, field := kc.b.Add(e, c.s.canonical(e.Tenant, nil), c.s.meta.keyLifetime); taken != "" {
			at.Problem(&c.p, field, "same key as %q", taken)
		}
	}
	if e.User != "" {
		kc.users = append(kc.users, keyUser{kc.ids.Len(), e.User, c.s.canonical(e.Tenant, nil)})
	}
	kc.ids.Add(e.ID)
}

// finish checks what needs every key: the limit, unique ids, users that
// name no tenant; and warns of keys bound to a tenant and a user who is no
// member of it, which every check refuses for that tenant.
func (kc *keyCompiler) finish(f *policyFile) {
	c, n := kc.c, kc.ids.Len()
	if n > 0 && f.Credentials.APIKey == nil {
		c.errf("keys", "keys are configured but credentials.api_key is not, so no key is ever read")
	}
	if f.KeyLimit > 0 && n > f.KeyLimit {
		src, at := c.src, "key_limit"
		if kc.fileSrc != nil {
			src, at = kc.fileSrc, "keys"
		}
		c.p.Addf(src, at, "%d keys exceed the policy's key_limit of %d; revoke keys or raise key_limit", n, f.KeyLimit)
	}
	kc.ids.Duplicates(func(i int) {
		kc.at(i).Problem(&c.p, ".id", "duplicate key id %q", kc.ids.At(i))
	})
	for _, ku := range kc.users {
		if u := ku.user; c.s.tenantNamed(u, nil, nil) {
			kc.at(ku.i).Problem(&c.p, ".user", "%q is also a tenant's name or alias; users and tenants share "+
				"the tenant header, so a user id must not name a tenant: give the user another id", u)
		}
		if ku.tenant != "" && !c.s.isMember(ku.tenant, ku.user, nil) {
			kc.at(ku.i).Problem(&c.warn, "", "key %q is bound to tenant %q and user %q, who is not a member of it: every check "+
				"refuses it (403 tenant_not_allowed) until %q is a member (tenants.%s.members), or bind the key to the tenant alone",
				kc.ids.At(ku.i), ku.tenant, ku.user, ku.user, ku.tenant)
		}
	}
}
