// Package cache holds the two caches that keep token checks cheap: the
// verified-token cache (verified tokens keyed by a SHA-256 digest of the
// token, in a Clock: CLOCK eviction over a sync.Map, so that a cached
// lookup takes no lock and scales with the cores) with its short-lived
// negative cache (hashicorp/golang-lru/v2's expirable LRU), and JWK sets
// per issuer (inline, from a file, or fetched over HTTP with background
// refresh), parsed with lestrrat-go/jwx/v2, each RSA key with its modulus
// prepared for verification (filippo.io/bigmod). Clock is the bounded map other
// hot caches (extauthz's encoded responses) are made of too.
//
// It stands alone: it knows nothing of policies, tiers, Envoy or gRPC. It
// never logs; fetch results reach the caller through return values and an
// optional callback that is always invoked outside any lock.
package cache
