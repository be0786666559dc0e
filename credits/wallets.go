package credits

// This file holds the wallets as a replica's mirror knows them: which
// tenants are metered, the version of each wallet's last change (a grant,
// a refill), and when it is refilled next.

import (
	"maps"
	"time"
)

// Wallet is what a check needs of a wallet: its last change's version
// (an exhausted wallet is asked again once it changes), the version that
// created it (a wallet deleted and made again is another: units held of
// the old one are never spent on the new one) and its next refill (for
// Retry-After; zero: none).
type Wallet struct {
	Version    int64
	Since      int64
	NextRefill time.Time
}

// Wallets is the set of live wallets by tenant. It is immutable and safe
// for concurrent use; With makes a changed copy. Wallets change rarely (a
// grant, a refill, a new wallet), never per check.
type Wallets struct{ m map[string]Wallet }

// NewWallets returns the set holding m (which it keeps).
func NewWallets(m map[string]Wallet) *Wallets { return &Wallets{m: m} }

// Lookup returns tenant's wallet, if it has one.
func (w *Wallets) Lookup(tenant string) (Wallet, bool) {
	if w == nil {
		return Wallet{}, false
	}
	x, ok := w.m[tenant]
	return x, ok
}

// Len returns how many wallets the set holds.
func (w *Wallets) Len() int {
	if w == nil {
		return 0
	}
	return len(w.m)
}

// With returns a copy of w with changes applied: a tenant's new state, or
// nil for a deleted wallet. w is unchanged.
func (w *Wallets) With(changes map[string]*Wallet) *Wallets {
	var m map[string]Wallet
	if w == nil {
		m = make(map[string]Wallet, len(changes))
	} else {
		m = maps.Clone(w.m)
		if m == nil {
			m = make(map[string]Wallet, len(changes))
		}
	}
	for t, c := range changes {
		if c == nil {
			delete(m, t)
		} else {
			m[t] = *c
		}
	}
	return &Wallets{m: m}
}
