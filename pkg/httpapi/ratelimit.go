package httpapi

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Per-key rate limits hold across ingress replicas: a key's token bucket (HOOKLINE_RATE_LIMIT
// per second, as many in a burst) lives in a NATS key-value entry (Options.Quota) that every
// replica takes tokens from, so a tenant's quota does not grow with the replica count.
//
// A replica does not go to NATS for every request: it takes a slice of a tenth of the rate at
// once (compare-and-set on the entry's revision) and spends it locally for up to a second.
// Every request admitted spent a token taken from the shared bucket, so all replicas together
// admit at most the burst plus the rate times the time; a slice left unspent when it expires is
// lost (admitting a little less, never more). One replica makes one round trip per slice (10 a
// second per busy key, whatever the rate), and a key found empty is refused locally until a
// token is due, so a tenant far over its limit costs no round trip per refused request. If
// NATS cannot be reached the replica falls back to its own bucket (the limit per replica).

// quotaSlices is how many slices a second's rate is cut into.
const quotaSlices = 10

// quota is one key's local share of its shared bucket on this replica.
type quota struct {
	mu         sync.Mutex
	tokens     int       // left in the slice taken
	expires    time.Time // the slice's end
	emptyUntil time.Time // the shared bucket was empty: refuse without asking until then
	// localUntil: the shared bucket could not be reached; limit on this replica alone until
	// then, rather than make every request of the key wait for its own failed round trip.
	localUntil time.Time
}

type quotas struct {
	mu sync.Mutex
	m  map[string]*quota
}

func (q *quotas) get(hash string) *quota {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil || len(q.m) > 100_000 { // bounded: many keys must not grow it forever
		q.m = map[string]*quota{}
	}
	k, ok := q.m[hash]
	if !ok {
		k = &quota{}
		q.m[hash] = k
	}
	return k
}

// allow reports whether the key (its hash) may make one more request now.
func (a *API) allow(ctx context.Context, hash string) bool {
	kv := a.opts.Quota
	if kv == nil {
		return a.limiter(hash).Allow()
	}
	q := a.quotas.get(hash)
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if q.tokens > 0 && now.Before(q.expires) {
		q.tokens--
		return true
	}
	if now.Before(q.emptyUntil) {
		return false
	}
	if now.Before(q.localUntil) {
		return a.limiter(hash).Allow()
	}
	rate := float64(a.opts.RateLimit)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n, err := takeTokens(ctx, kv, hex.EncodeToString([]byte(hash)), rate, a.opts.RateLimit, max(a.opts.RateLimit/quotaSlices, 1), now)
	if err != nil {
		if t := time.Now().UnixNano(); t-a.quotaLogged.Load() > int64(10*time.Second) {
			a.quotaLogged.Store(t)
			a.log.WarnContext(ctx, "shared rate limits unavailable, limiting per replica", "err", err)
		}
		q.localUntil = time.Now().Add(time.Second)
		return a.limiter(hash).Allow()
	}
	if n == 0 {
		q.tokens, q.emptyUntil = 0, now.Add(time.Duration(float64(time.Second)/rate))
		return false
	}
	q.tokens, q.expires = n-1, now.Add(time.Second)
	return true
}

// takeTokens takes up to want tokens from the shared bucket under key (rate per second, burst
// at most), refilled since it was last counted; it returns how many it took (0: empty).
// Concurrent takers are ordered by the entry's revision: a taker that lost the race reads
// again. The entry holds "tokens unix-nanoseconds"; the time only moves forward, so a replica
// whose clock is behind refills less, never more.
func takeTokens(ctx context.Context, kv jetstream.KeyValue, key string, rate float64, burst, want int, now time.Time) (int, error) {
	for range 8 {
		tokens, at, rev := float64(burst), now, uint64(0)
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, err
		default:
			rev = e.Revision()
			t, ns, ok := strings.Cut(string(e.Value()), " ")
			v, err1 := strconv.ParseFloat(t, 64)
			n, err2 := strconv.ParseInt(ns, 10, 64)
			if ok && err1 == nil && err2 == nil {
				tokens, at = v, time.Unix(0, n)
				if now.After(at) {
					tokens = min(float64(burst), tokens+now.Sub(at).Seconds()*rate)
					at = now
				}
			}
		}
		n := min(want, int(tokens))
		if n <= 0 {
			return 0, nil
		}
		val := []byte(strconv.FormatFloat(tokens-float64(n), 'f', 3, 64) + " " + strconv.FormatInt(at.UnixNano(), 10))
		if rev == 0 {
			_, err = kv.Create(ctx, key, val)
		} else {
			_, err = kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, err
		}
	}
	return 0, nil // lost the race eight times in a row: refuse this one
}
