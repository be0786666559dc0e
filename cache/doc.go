// Package cache holds the two caches that keep token checks cheap: the
// verified-token cache (an LRU of verified tokens keyed by a SHA-256 digest
// of the token, on hashicorp/golang-lru/v2) with its short-lived negative
// cache, and JWK sets per issuer (inline, from a file, or fetched over HTTP
// with background refresh), parsed with lestrrat-go/jwx/v2.
//
// It stands alone: it knows nothing of policies, tiers, Envoy or gRPC. It
// never logs; fetch results reach the caller through return values and an
// optional callback that is always invoked outside any lock.
package cache
