package dispatcher

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// The dispatcher keeps two maps keyed by webhook: endpoints (slots, waiters, FIFO turns, rate
// limiter, latency average) and the target cache (the webhook's decoded row). Both would grow
// with every webhook that ever received a delivery; the sweep below drops the entries of
// webhooks that have been idle for IdleAfter, and never one that holds work.

// sweep drops idle webhooks' state every minute (or every IdleAfter when shorter) until ctx
// ends.
func (d *Dispatcher) sweep(ctx context.Context) {
	every(ctx, min(d.opts.IdleAfter, time.Minute), func() {
		if n, m := d.evictIdle(time.Now()); n+m > 0 {
			d.log.Debug("dropped idle webhooks' state", "endpoints", n, "targets", m)
		}
	})
}

// evictIdle drops, as of now, the endpoints idle for IdleAfter (see endpoint.idle) and the
// cached targets loaded more than IdleAfter ago that no endpoint remains for; it returns how
// many of each went.
func (d *Dispatcher) evictIdle(now time.Time) (endpoints, targets int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, ep := range d.endpoints {
		if !ep.idle(now, d.opts.IdleAfter) {
			continue
		}
		// The consumer takes a place (reserve) after it looked the endpoint up, outside d.mu:
		// mark it gone first, then look at held again. Either this sees the place taken and
		// keeps the endpoint, or place sees gone and looks again (both orders are covered,
		// Go's atomics being sequentially consistent), so no delivery ever holds a place at
		// an endpoint that is no longer the webhook's.
		ep.gone.Store(true)
		if ep.held.Load() != 0 {
			ep.gone.Store(false)
			continue
		}
		delete(d.endpoints, id)
		endpoints++
	}
	targets = d.targets.evict(now.Add(-d.opts.IdleAfter), func(id uuid.UUID) bool {
		_, ok := d.endpoints[id]
		return ok
	})
	return endpoints, targets
}

// place looks up webhook id's endpoint and takes a place there (reserve); reserved is false
// when none is left. It runs on the consumer's callback.
func (d *Dispatcher) place(ctx context.Context, id uuid.UUID) (ep *endpoint, reserved bool) {
	return d.placeAt(ctx, id, d.endpoint(id))
}

// placeAt takes a place at ep, webhook id's endpoint when it was looked up, or at its
// successor if the sweep dropped ep meanwhile.
func (d *Dispatcher) placeAt(ctx context.Context, id uuid.UUID, ep *endpoint) (*endpoint, bool) {
	for {
		reserved := ep.reserve(ctx)
		if !ep.gone.Load() {
			return ep, reserved
		}
		if reserved {
			ep.release()
		}
		ep = d.endpoint(id)
	}
}

// idle reports an endpoint that holds nothing (no place taken, so no delivery in flight,
// waiting for a slot, for the rate limiter or for its FIFO turn), was neither looked up nor
// freed a place for idle, and whose hand-back schedule (nextSlot) is past. Dropping it loses
// only its latency average and limiter state, which a fresh endpoint rebuilds.
func (e *endpoint) idle(now time.Time, idle time.Duration) bool {
	cut := now.Add(-idle).UnixNano()
	if e.held.Load() != 0 || e.used.Load() > cut || e.lastDone.Load() > cut {
		return false
	}
	e.mu.Lock()
	busy := e.inflight > 0 || len(e.waiters) > 0 || e.nextSlot.After(now)
	e.mu.Unlock()
	if busy {
		return false
	}
	e.turnMu.Lock()
	defer e.turnMu.Unlock()
	return len(e.turns) == 0
}

// evict drops the targets loaded before cut for which keep is false; it returns how many went.
func (c *targetCache) evict(cut time.Time, keep func(uuid.UUID) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, t := range c.m {
		if t.loaded.Before(cut) && !keep(id) {
			delete(c.m, id)
			n++
		}
	}
	return n
}
