package natsx

import (
	"sync"
	"sync/atomic"
	"time"
)

// Backoff spaces the redeliveries of work that failed because a dependency (PostgreSQL, NATS)
// is away: 1 s after the first failure, doubling up to 16 s, back to the start after a
// success. It also says when to log, at most once per 10 s, so an outage is reported, not
// repeated for every message. Safe for concurrent use; the zero value is ready.
type Backoff struct {
	failing  atomic.Bool // a cheap OK while nothing fails
	mu       sync.Mutex
	failures int
	logged   time.Time
	quiet    int // failures not logged since the last log line
}

// Backoff's bounds.
const (
	backoffFirst = time.Second
	backoffMax   = 16 * time.Second // so a consumer is back within about 16 s of PostgreSQL returning
	backoffLog   = 10 * time.Second
)

// Fail records a failure and returns how long to wait before the work is tried again, whether
// to log it now, and how many failures went unlogged before it.
func (b *Backoff) Fail(now time.Time) (wait time.Duration, logNow bool, unlogged int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failing.Store(true)
	b.failures++
	wait = backoffFirst
	for i := 1; i < b.failures && wait < backoffMax; i++ {
		wait *= 2
	}
	wait = min(wait, backoffMax)
	if now.Sub(b.logged) >= backoffLog {
		b.logged, unlogged, b.quiet = now, b.quiet, 0
		return wait, true, unlogged
	}
	b.quiet++
	return wait, false, 0
}

// OK records a success: the next failure waits backoffFirst again.
func (b *Backoff) OK() {
	if !b.failing.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failing.Store(false)
	b.failures = 0
}
