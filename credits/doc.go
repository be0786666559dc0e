// Package credits owns admission against wallets: the units a replica
// holds for each wallet, spent by checks with atomics, and taken from and
// returned to the store through the small Bank interface, so that a check
// never waits on the database while its replica holds units for the
// wallet, and the units admitted across every replica never exceed the
// units granted (docs/credits.md holds the design and its proof sketch).
//
// It knows no SQL (the store implements Bank) and decides nothing about
// who may call what: the policy says what a request costs and which wallet
// pays, and asks a Ledger to admit it.
package credits
