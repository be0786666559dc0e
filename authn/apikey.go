package authn

// This file holds the API-key check.

import (
	"time"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/reason"
)

// MaxKeyBytes bounds an API key; longer values are refused unhashed.
const MaxKeyBytes = 512

// CheckKey finds the key plain in idx and says whether it may be used at
// now. A key that was found is returned even when it is refused (disabled,
// expired), so that the refusal can name it by id.
//
// The look-up is a map access keyed by the key's digest, and that is no
// timing oracle: what its timing could reveal is how SHA-256 of the
// presented value compares with stored digests (a bucket, a shared
// prefix), and an attacker who chose the presented value learns nothing
// from that about any stored key, since even a whole stored digest does not
// give its preimage. No stored value is ever compared byte by byte with
// anything the client sent.
//
// A key in the minted format whose checksum does not match is refused
// before any look-up (a mistyped or invented key costs no hashing).
func CheckKey(set keys.Set, plain string, now time.Time) (keys.APIKey, bool, reason.Code) {
	if len(plain) > MaxKeyBytes || !keys.WellFormed(plain) {
		return keys.APIKey{}, false, reason.InvalidAPIKey
	}
	k, ok := set.Lookup(keys.DigestOf(plain))
	switch {
	case !ok:
		return k, false, reason.InvalidAPIKey
	case k.Disabled:
		return k, true, reason.KeyDisabled
	case k.ExpiredAt(now):
		return k, true, reason.KeyExpired
	}
	return k, true, ""
}
