package keys

// This file holds what one API key is as data: its digest, its entry, its
// state.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Digest is the SHA-256 of an API key, all that is ever stored of one.
type Digest [sha256.Size]byte

// DigestOf returns the digest of the plaintext key: the one digest function
// behind every keys file, database row and look-up.
func DigestOf(key string) Digest {
	var buf [128]byte // a key's bytes on the stack: a check allocates nothing for its digest
	if len(key) <= len(buf) {
		return Digest(sha256.Sum256(append(buf[:0], key...)))
	}
	return Digest(sha256.Sum256([]byte(key)))
}

// Bytes returns the digest's 32 bytes.
func (d Digest) Bytes() []byte { return d[:] }

// String returns the digest as 64 lower-case hex digits, as keys files
// write it.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// errDigest says what a digest must look like.
var errDigest = errors.New("want the key's SHA-256 as 64 hex digits (portcullis keys hash)")

// ParseDigest parses 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, errDigest
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, errDigest
	}
	return d, nil
}

// Entry is one API key as written in a keys file or stored: identity,
// binding, tier, lifetime and what people call it. An Entry is a plain
// value; the index copies what checks need out of it.
type Entry struct {
	ID          string
	Digest      Digest
	Tenant      string // "" when bound to no tenant
	User        string // "" when bound to no user
	Tier        string // the highest tier the key may reach
	Superuser   bool
	Created     time.Time
	Expires     time.Time // as written; zero: none (a policy's key_lifetime may still end it)
	Disabled    bool
	Label       string
	Description string
	Rotated     time.Time  // when the value last changed; zero: never
	Previous    []Previous // old values of a rotated key, each valid until its Expires
	Limit       RateLimit  // the key's own rate limit (zero: its tenant's plan)
}

// Previous is an old value of a rotated key.
type Previous struct {
	Digest  Digest
	Expires time.Time
}

// The states of a key, as listings show them.
const (
	StateActive   = "active"
	StateDisabled = "disabled"
	StateExpired  = "expired"
	StateRotating = "rotating" // active, and an old value still works too
)

// ExpiresAt returns when the key stops working: its own expiry, else its
// creation plus lifetime (a policy's key_lifetime), else never (zero).
func (e *Entry) ExpiresAt(lifetime time.Duration) time.Time {
	if !e.Expires.IsZero() || lifetime <= 0 || e.Created.IsZero() {
		return e.Expires
	}
	return e.Created.Add(lifetime)
}

// State returns the key's state at now under the given default lifetime.
func (e *Entry) State(now time.Time, lifetime time.Duration) string {
	switch exp := e.ExpiresAt(lifetime); {
	case e.Disabled:
		return StateDisabled
	case !exp.IsZero() && !now.Before(exp):
		return StateExpired
	}
	for _, p := range e.Previous {
		if now.Before(p.Expires) {
			return StateRotating
		}
	}
	return StateActive
}

// Summary is what listings show of a key: never a secret, never a digest.
type Summary struct {
	ID          string     `json:"id"`
	Label       string     `json:"label,omitempty"`
	Description string     `json:"description,omitempty"`
	Tenant      string     `json:"tenant,omitempty"`
	User        string     `json:"user,omitempty"`
	Tier        string     `json:"tier"`
	Superuser   bool       `json:"superuser,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	State       string     `json:"state"`
}

// Summarize returns what listings show of e at now, under the default
// lifetime.
func (e *Entry) Summarize(now time.Time, lifetime time.Duration) Summary {
	s := Summary{ID: e.ID, Label: e.Label, Description: e.Description, Tenant: e.Tenant, User: e.User, Tier: e.Tier,
		Superuser: e.Superuser, Created: e.Created, State: e.State(now, lifetime)}
	if exp := e.ExpiresAt(lifetime); !exp.IsZero() {
		s.Expires = &exp
	}
	return s
}
