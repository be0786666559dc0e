package cache

// This file holds the cache of token verification outcomes.

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Digest identifies a token in the caches: its SHA-256, so a cache never
// holds a token and a forged token cannot collide with a verified one.
type Digest [sha256.Size]byte

// digestBufs recycles the buffers DigestOf copies tokens into, so that the
// cached path allocates no token-sized garbage.
var digestBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// DigestOf returns the Digest of token.
func DigestOf(token string) Digest {
	bp := digestBufs.Get().(*[]byte)
	b := append((*bp)[:0], token...)
	d := Digest(sha256.Sum256(b))
	if cap(b) <= 64<<10 {
		*bp = b
		digestBufs.Put(bp)
	}
	return d
}

type verified[V any] struct {
	value   V
	expires int64 // Unix nanoseconds: 8 bytes, not a time.Time's 24, per cached token
}

// Tokens caches the outcome of token verification: successes (type V) until
// the token's expiry, at most size of them, in a Clock (a lookup takes no
// lock; the least recently used are evicted first, roughly);
// failures (type F) for a short FailureTTL, so a flood of garbage tokens
// costs one verification each per TTL. It is safe for concurrent use.
type Tokens[V, F any] struct {
	ok           *Clock[Digest, verified[V]]
	bad          *expirable.LRU[Digest, F]
	hits, misses atomic.Uint64
}

// NewTokens returns a cache of at most size verified tokens and failSize
// failures, each failure kept for failTTL.
func NewTokens[V, F any](size, failSize int, failTTL time.Duration) *Tokens[V, F] {
	if size <= 0 {
		panic("cache: token cache size must be positive") // programming error
	}
	return &Tokens[V, F]{ok: NewClock[Digest, verified[V]](size), bad: expirable.NewLRU[Digest, F](failSize, nil, failTTL)}
}

// Verified returns the value cached for d if it has not expired at now; an
// expired entry is removed.
func (t *Tokens[V, F]) Verified(d Digest, now time.Time) (V, bool) {
	e, ok := t.ok.Get(d)
	if ok && now.UnixNano() >= e.expires {
		t.ok.Remove(d)
		ok = false
	}
	if !ok {
		t.misses.Add(1)
		var zero V
		return zero, false
	}
	t.hits.Add(1)
	return e.value, true
}

// AddVerified caches v for d until expires.
func (t *Tokens[V, F]) AddVerified(d Digest, v V, expires time.Time) {
	t.ok.Add(d, verified[V]{value: v, expires: expires.UnixNano()})
}

// Forget drops any success cached for d.
func (t *Tokens[V, F]) Forget(d Digest) { t.ok.Remove(d) }

// Failed returns the failure cached for d, if any and still fresh.
func (t *Tokens[V, F]) Failed(d Digest) (F, bool) { return t.bad.Get(d) }

// AddFailed caches the failure f for d for the failure TTL.
func (t *Tokens[V, F]) AddFailed(d Digest, f F) { t.bad.Add(d, f) }

// Stats returns how many Verified lookups hit and missed so far.
func (t *Tokens[V, F]) Stats() (hits, misses uint64) { return t.hits.Load(), t.misses.Load() }

// Len returns the number of cached successes.
func (t *Tokens[V, F]) Len() int { return t.ok.Len() }
