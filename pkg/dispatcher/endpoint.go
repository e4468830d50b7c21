package dispatcher

import (
	"context"
	"golang.org/x/time/rate"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// endpoint limits one webhook's requests in flight to its concurrency (the webhook's
// max_concurrency, else EndpointConcurrency), and their rate to its rate_limit, with at most
// twice that many deliveries waiting in memory for a slot. Beyond that a delivery is handed back
// to the retry mechanism, so a hung endpoint holds a bounded number of consumer slots and never
// starves the others.
type endpoint struct {
	held  atomic.Int64 // in flight + waiting
	limit atomic.Int64 // 3 * concurrency, or minPlaces
	// minPlaces raises limit for a FIFO webhook (concurrency 1); 0: none.
	minPlaces atomic.Int64
	// turns: the FIFO sequences held here, each with a channel closed when it is its turn.
	turnMu sync.Mutex
	turns  map[int64]chan struct{}

	// settings reads the webhook's concurrency and rate (0: none) from its cached row; nil
	// keeps what the endpoint was made with. configure applies them, before each attempt, so a
	// PATCH applies within the row cache's TTL and the first deliveries after a start are
	// limited once their row is loaded (handle loads it before enter).
	settings func() (concurrency int, perSecond float64)

	room chan struct{} // a token whenever a slot frees; admit waits on it
	// lastDone is the unix nanos of the last progress: a place freed (an attempt finished or
	// a delivery ended without one), or an attempt started while none was in flight (an
	// idle endpoint is not a hung one).
	lastDone atomic.Int64
	born     time.Time // when the first delivery arrived
	// used is the unix nanos of the last lookup of this endpoint (endpointOf); gone is set
	// when the sweep drops it, so a lookup that got it just before looks again (evict.go).
	used atomic.Int64
	gone atomic.Bool

	mu       sync.Mutex
	n        int             // concurrency: requests in flight at most
	inflight int             // requests in flight (slots taken)
	waiters  []chan struct{} // deliveries waiting for a slot, first come first served
	rate     float64         // deliveries per second at most; 0: no limit
	limiter  *rate.Limiter   // nil without a rate
	latency  float64         // moving average of attempt durations, seconds
	nextSlot time.Time       // when the last handed-back delivery was scheduled
}

func newEndpoint(n int, settings func() (int, float64)) *endpoint {
	e := &endpoint{room: make(chan struct{}, 1), born: time.Now(), settings: settings, n: n}
	e.limit.Store(int64(3 * n))
	return e
}

// configure applies the webhook's current settings.
func (e *endpoint) configure() {
	if e.settings == nil {
		return
	}
	n, perSecond := e.settings()
	e.mu.Lock()
	defer e.mu.Unlock()
	if n > 0 && n != e.n {
		e.n = n
		e.grant() // waiters may fit now
	}
	// Places (in flight + waiting) are 3 × concurrency, or minPlaces when that is more: a FIFO
	// webhook posts one at a time, yet its next deliveries wait here in stream order (waiters
	// are served first come first served) rather than go round through PostgreSQL.
	if limit := max(int64(3*e.n), e.minPlaces.Load()); limit != e.limit.Load() {
		e.limit.Store(limit)
	}
	if perSecond != e.rate {
		e.rate, e.limiter = perSecond, nil
		if perSecond > 0 {
			// A burst of one: attempts start at most 1/rate apart, so a receiver that asked
			// for 50/s never sees more in any window.
			e.limiter = rate.NewLimiter(rate.Limit(perSecond), 1)
		}
	}
}

// grant hands free slots to the waiters, in order; e.mu is held. A slot goes straight to one
// waiter (no herd woken on every release).
func (e *endpoint) grant() {
	for len(e.waiters) > 0 && e.inflight < e.n {
		ch := e.waiters[0]
		e.waiters = e.waiters[1:]
		e.inflight++
		ch <- struct{}{} // buffered: never blocks
	}
}

// acquire takes a slot, waiting for one (counted in waiting) when all are taken; waited says
// it had to, ok is false when ctx ended first.
func (e *endpoint) acquire(ctx context.Context, waiting prometheus.Gauge) (waited, ok bool) {
	e.mu.Lock()
	if e.inflight < e.n && len(e.waiters) == 0 {
		e.inflight++
		first := e.inflight == 1
		e.mu.Unlock()
		if first {
			// Busy again after being idle: its progress clock restarts now, or an endpoint
			// that merely had nothing to do would count as hung (after a restart, the
			// messages a dead process held all come back together after AckWait).
			e.lastDone.Store(time.Now().UnixNano())
		}
		return false, true
	}
	ch := make(chan struct{}, 1)
	e.waiters = append(e.waiters, ch)
	e.mu.Unlock()
	waiting.Inc()
	defer waiting.Dec()
	select {
	case <-ch:
		return true, true
	case <-ctx.Done():
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-ch: // granted meanwhile: pass it on
		e.inflight--
		e.grant()
	default:
		e.waiters = slices.DeleteFunc(e.waiters, func(c chan struct{}) bool { return c == ch })
	}
	return true, false
}

// releaseSlot gives a slot back, to the first waiter if any.
func (e *endpoint) releaseSlot() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inflight--
	e.grant()
}

// slowAttempt is the average attempt duration past which an endpoint is slow: its surplus is
// handed back, never waited for. It is also how long an endpoint may finish nothing (while it
// has requests in flight) before it counts as hung, and the longest the consumer waits for a
// place at a healthy endpoint.
const slowAttempt = time.Second

// quickSlot is the longest expected wait for one of a healthy endpoint's slots (average attempt
// duration / concurrency) for which the consumer waits rather than hands the delivery back.
// Past it, a saturated endpoint's waits would hold up every other endpoint's messages queued
// behind in the stream.
const quickSlot = 10 * time.Millisecond

// reserve takes a place (in flight or waiting) at the endpoint for one delivery; false means
// none is left and the delivery is handed back. It runs on the consumer's callback, in order,
// before the delivery's worker starts, so a burst cannot overshoot the limit.
//
// When the endpoint is full but healthy (see healthy), reserve waits for a place, at most
// slowAttempt: pulling pauses, so a busy but healthy endpoint's surplus stays a JetStream
// backlog and comes through at the endpoint's own pace, with no round trip through
// PostgreSQL. A slow, hung or saturated-slow endpoint is never waited for: its surplus is
// handed back, so it cannot hold up the others.
func (e *endpoint) reserve(ctx context.Context) bool {
	if e.held.Load() >= e.limit.Load() && e.healthy(time.Now()) {
		timer := time.NewTimer(slowAttempt)
		defer timer.Stop()
	wait:
		for e.held.Load() >= e.limit.Load() {
			select {
			case <-e.room:
			case <-timer.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	if e.held.Add(1) > e.limit.Load() {
		e.held.Add(-1)
		return false
	}
	return true
}

// release gives back a place taken by reserve when no attempt followed.
func (e *endpoint) release() {
	// A place freed is progress, with or without an attempt (a redelivered copy found
	// already recorded, a webhook gone): an endpoint is hung only while it holds places and
	// frees none.
	e.lastDone.Store(time.Now().UnixNano())
	e.held.Add(-1)
	e.signal()
}

func (e *endpoint) signal() {
	select {
	case e.room <- struct{}{}:
	default:
	}
}

// healthy reports an endpoint worth waiting for when it is full: new (nothing finished yet,
// first delivery within slowAttempt; right after a restart every endpoint is new), or making
// progress (a place freed within slowAttempt) with attempts that average under slowAttempt
// and a slot that frees within quickSlot on average. A rate-limited endpoint never is: its
// pace is its limit, and waiting for it would hold up every other endpoint.
func (e *endpoint) healthy(now time.Time) bool {
	e.mu.Lock()
	limited := e.limiter != nil
	e.mu.Unlock()
	if limited {
		return false
	}
	last := e.lastDone.Load()
	if last == 0 {
		return now.Sub(e.born) < slowAttempt
	}
	if now.UnixNano()-last > int64(slowAttempt) {
		return false // hung: requests in flight, none finishing
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latency < slowAttempt.Seconds() && e.latency/float64(e.n) < quickSlot.Seconds()
}

// observe folds one attempt's duration into the endpoint's moving average.
func (e *endpoint) observe(d time.Duration) {
	e.lastDone.Store(time.Now().UnixNano())
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.latency == 0 {
		e.latency = d.Seconds()
		return
	}
	e.latency = 0.9*e.latency + 0.1*d.Seconds()
}

// handBackAt schedules a handed-back delivery. Hand-backs of one endpoint are spread at the
// rate the endpoint has been absorbing deliveries (concurrency / average duration, or / the
// time since it last finished an attempt when that is longer), starting at least base from now, so a saturated endpoint's surplus comes back about when there is
// room for it, instead of every surplus delivery bouncing through PostgreSQL each second. A
// hung endpoint (durations at the timeout) gets its surplus spread far apart.
func (e *endpoint) handBackAt(now time.Time, base time.Duration) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	// An endpoint that has finished nothing for a while (hung: its attempts run to the
	// timeout) has no useful average; the time it has been stuck stands in for it. One that
	// never finished an attempt counts from its first delivery.
	since := e.born
	if last := e.lastDone.Load(); last != 0 {
		since = time.Unix(0, last)
	}
	latency := max(e.latency, now.Sub(since).Seconds(), 0.0005)
	step := time.Duration(latency / float64(e.n) * float64(time.Second))
	if e.rate > 0 {
		step = max(step, time.Duration(float64(time.Second)/e.rate)) // no sooner than its limit lets it in
	}
	if earliest := now.Add(base); e.nextSlot.Before(earliest) {
		e.nextSlot = earliest
	}
	// Never further than maxHandBack ahead: a misjudged endpoint gets its surplus back soon.
	e.nextSlot = e.nextSlot.Add(step)
	if latest := now.Add(base + maxHandBack); e.nextSlot.After(latest) {
		e.nextSlot = latest
	}
	return e.nextSlot
}

// maxHandBack bounds how far past the base delay a handed-back delivery is scheduled: once a
// slow or hung endpoint recovers, its surplus arrives within about this long (make chaos holds
// every delivery to 60 s after a fault ends; at a minute, a receiver that dripped its answers
// for 60 s had 36 of 20,000 arrive 61 s after).
const maxHandBack = 30 * time.Second

type entry int

const (
	entered   entry = iota // a slot at once
	waited                 // a slot after waiting
	cancelled              // ctx ended while waiting
)

func (d *Dispatcher) endpoint(id uuid.UUID) *endpoint {
	ep := d.endpointOf(id)
	ep.configure() // outside d.mu: it reads the target cache
	return ep
}

func (d *Dispatcher) endpointOf(id uuid.UUID) *endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	ep, ok := d.endpoints[id]
	if !ok {
		def := d.opts.EndpointConcurrency
		ep = newEndpoint(def, func() (int, float64) {
			t := d.targets.peek(id)
			if t == nil {
				return def, 0
			}
			if t.fifo {
				ep.minPlaces.Store(int64(3 * def))
			} else {
				ep.minPlaces.Store(0)
			}
			if t.concurrency > 0 {
				return t.concurrency, t.rate
			}
			return def, t.rate
		})
		d.endpoints[id] = ep
	}
	ep.used.Store(time.Now().UnixNano())
	return ep
}

// enter takes a slot for a delivery that holds a place (reserve), then waits for its turn
// under the rate limit; after entered or waited the caller must call leave, which also gives
// the place back.
func (e *endpoint) enter(ctx context.Context, waiting prometheus.Gauge) entry {
	e.configure() // the webhook's row was loaded just before: its settings apply from here
	queued, ok := e.acquire(ctx, waiting)
	if !ok {
		return cancelled
	}
	result := entered
	if queued {
		result = waited
	}
	e.mu.Lock()
	limiter := e.limiter
	e.mu.Unlock()
	if limiter != nil {
		if r := limiter.Reserve(); r.Delay() > 0 {
			result = waited
			if !sleep(ctx, r.Delay(), waiting) {
				r.Cancel()
				e.releaseSlot()
				return cancelled
			}
		}
	}
	return result
}

// sleep waits d, counted in waiting; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration, waiting prometheus.Gauge) bool {
	waiting.Inc()
	defer waiting.Dec()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *endpoint) leave() {
	e.releaseSlot()
	e.release()
}

// awaitTurn waits until seq is the smallest FIFO sequence waiting at this endpoint (false if
// ctx ends first); doneTurn(seq) must follow. Deliveries of a FIFO webhook held in memory thus
// take its one slot in event order.
func (e *endpoint) awaitTurn(ctx context.Context, seq int64) bool {
	e.turnMu.Lock()
	if e.turns == nil {
		e.turns = map[int64]chan struct{}{}
	}
	ch := make(chan struct{})
	e.turns[seq] = ch
	first := e.firstTurnLocked() == seq
	e.turnMu.Unlock()
	if first {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		e.doneTurn(seq)
		return false
	}
}

// doneTurn removes seq from the waiting sequences and wakes the next one.
func (e *endpoint) doneTurn(seq int64) {
	e.turnMu.Lock()
	defer e.turnMu.Unlock()
	delete(e.turns, seq)
	if len(e.turns) == 0 {
		return
	}
	next := e.firstTurnLocked()
	if ch := e.turns[next]; ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

func (e *endpoint) firstTurnLocked() int64 {
	first := int64(-1)
	for s := range e.turns {
		if first < 0 || s < first {
			first = s
		}
	}
	return first
}
