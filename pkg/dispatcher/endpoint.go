package dispatcher

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// endpoint limits one webhook's requests in flight to EndpointConcurrency, with at most twice
// that many deliveries waiting in memory for a slot. Beyond that a delivery is handed back to
// the retry mechanism, so a hung endpoint holds a bounded number of consumer slots and never
// starves the others.
type endpoint struct {
	slots chan struct{} // one token per request in flight
	held  atomic.Int64  // in flight + waiting
	limit int64         // 3 * concurrency

	mu       sync.Mutex
	latency  float64   // moving average of attempt durations, seconds
	nextSlot time.Time // when the last handed-back delivery was scheduled
}

// observe folds one attempt's duration into the endpoint's moving average.
func (e *endpoint) observe(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.latency == 0 {
		e.latency = d.Seconds()
		return
	}
	e.latency = 0.9*e.latency + 0.1*d.Seconds()
}

// handBackAt schedules a handed-back delivery. Hand-backs of one endpoint are spread at the
// rate the endpoint has been absorbing deliveries (concurrency / average duration), starting
// at least base from now, so a saturated endpoint's surplus comes back about when there is
// room for it, instead of every surplus delivery bouncing through PostgreSQL each second. A
// hung endpoint (durations at the timeout) gets its surplus spread far apart.
func (e *endpoint) handBackAt(now time.Time, base time.Duration) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	step := time.Duration(max(e.latency, 0.0005) / float64(cap(e.slots)) * float64(time.Second))
	if earliest := now.Add(base); e.nextSlot.Before(earliest) {
		e.nextSlot = earliest
	}
	e.nextSlot = e.nextSlot.Add(step)
	return e.nextSlot
}

type entry int

const (
	entered   entry = iota // a slot at once
	waited                 // a slot after waiting
	full                   // no slot and no waiting place: hand the delivery back
	cancelled              // ctx ended while waiting
)

func (d *Dispatcher) endpoint(id uuid.UUID) *endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	ep, ok := d.endpoints[id]
	if !ok {
		n := d.opts.EndpointConcurrency
		ep = &endpoint{slots: make(chan struct{}, n), limit: int64(3 * n)}
		d.endpoints[id] = ep
	}
	return ep
}

// enter takes a slot; after entered or waited the caller must call leave.
func (e *endpoint) enter(ctx context.Context, waiting prometheus.Gauge) entry {
	if e.held.Add(1) > e.limit {
		e.held.Add(-1)
		return full
	}
	select {
	case e.slots <- struct{}{}:
		return entered
	default:
	}
	waiting.Inc()
	defer waiting.Dec()
	select {
	case e.slots <- struct{}{}:
		return waited
	case <-ctx.Done():
		e.held.Add(-1)
		return cancelled
	}
}

func (e *endpoint) leave() {
	<-e.slots
	e.held.Add(-1)
}
