package httpapi

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// API keys are looked up in PostgreSQL and remembered briefly, on each replica:
//
//   - a known key for keyTTL (1 s), so a request costs a map read rather than a query, and a
//     key revoked (`hookline apikey revoke` writes to PostgreSQL only) stops working within a
//     second on every replica without a message between them; the price is one indexed
//     lookup per key per second per replica;
//   - an unknown key for unknownKeyTTL, in a map of its own of at most maxUnknownKeys entries,
//     so repeating a made-up key costs no query and a flood of them cannot push out the known
//     ones;
//   - each client address (the TCP peer) may have failuresPerSecond lookups a second find no
//     key, after a burst of failureBurst; past that, a key neither known nor remembered as
//     unknown is answered 429 with Retry-After, without a query. A repeated unknown key is a
//     401 from the cache and is not counted; keys already known are never held back, so
//     clients behind the same proxy as an attacker keep working.

const (
	keyTTL            = time.Second
	unknownKeyTTL     = 10 * time.Second
	maxKnownKeys      = 100_000
	maxUnknownKeys    = 10_000
	failuresPerSecond = 5
	failureBurst      = 20
	maxAddresses      = 10_000
)

// keyCache holds what resolveKey learnt of API keys, by key hash.
type keyCache struct {
	mu      sync.Mutex
	m       map[string]cachedKey // known keys (ok is always true)
	unknown map[string]time.Time // unknown or revoked keys, until when
	// failures: each client address's budget of unknown keys
	failures map[string]*rate.Limiter
	// lookups counts the queries to PostgreSQL for keys (tests read it)
	lookups atomic.Int64
}

type cachedKey struct {
	p       Principal
	ok      bool
	expires time.Time
}

// known returns the known entry of hash, expired or not.
func (k *keyCache) known(hash string) (cachedKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ck, ok := k.m[hash]
	return ck, ok
}

func (k *keyCache) remember(hash string, ck cachedKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m) >= maxKnownKeys { // only keys that exist get here: a reset is rare
		k.m = map[string]cachedKey{}
	}
	k.m[hash] = ck
}

// isUnknown reports a key found unknown less than unknownKeyTTL ago.
func (k *keyCache) isUnknown(hash string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	until, ok := k.unknown[hash]
	return ok && now.Before(until)
}

// forget records hash as unknown (never existed, or revoked).
func (k *keyCache) forget(hash string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, hash)
	if k.unknown == nil {
		k.unknown = map[string]time.Time{}
	}
	if len(k.unknown) >= maxUnknownKeys {
		for h, until := range k.unknown {
			if !now.Before(until) {
				delete(k.unknown, h)
			}
		}
		if len(k.unknown) >= maxUnknownKeys { // all still fresh: start over rather than grow
			k.unknown = map[string]time.Time{}
		}
	}
	k.unknown[hash] = now.Add(unknownKeyTTL)
}

// budget returns the unknown-key limiter of a client address.
func (k *keyCache) budget(addr string) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.failures[addr]
	if ok {
		return l
	}
	if k.failures == nil {
		k.failures = map[string]*rate.Limiter{}
	}
	if len(k.failures) >= maxAddresses {
		now := time.Now()
		for a, l := range k.failures { // a full bucket is an address that stopped failing
			if l.TokensAt(now) >= failureBurst {
				delete(k.failures, a)
			}
		}
		if len(k.failures) >= maxAddresses {
			k.failures = map[string]*rate.Limiter{}
		}
	}
	l = rate.NewLimiter(failuresPerSecond, failureBurst)
	k.failures[addr] = l
	return l
}
