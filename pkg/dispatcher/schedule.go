package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
)

// jobs runs the scheduler and the reconciler: on every replica without a lease, else while this
// replica holds it.
func (d *Dispatcher) jobs(ctx context.Context) {
	run := func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); d.schedule(ctx) }()
		go func() { defer wg.Done(); d.reconcile(ctx) }()
		wg.Wait()
	}
	if d.opts.Lease == nil {
		run(ctx)
		return
	}
	d.opts.Lease.Run(ctx, run)
}

// schedule republishes retries whose next_attempt_at has come, every ScanInterval, in batches
// of up to 1,000 while there are more.
func (d *Dispatcher) schedule(ctx context.Context) {
	var away natsx.Backoff // a failing tick is logged at most once per 10 s
	every(ctx, d.opts.ScanInterval, func() {
		d.m.TaskRuns.WithLabelValues("schedule").Inc()
		tctx, cancel := context.WithTimeout(ctx, tickTimeout)
		defer cancel()
		for {
			n, err := store.ClaimDue(tctx, d.db, 1000, d.publisher(tctx))
			if err != nil {
				if _, logNow, unlogged := away.Fail(time.Now()); logNow && ctx.Err() == nil {
					d.log.Warn("publish due retries", "err", err, "failures_not_logged", unlogged)
				}
				break
			}
			away.OK()
			if n < 1000 {
				break
			}
		}
	})
}

// reconcile republishes deliveries whose message was lost (a purged stream, a lost disk):
// first attempts never attempted ReconcileAfter after they were created (walked in created_at
// order past a durable mark, so each row is looked at once), and published retries that have
// not moved for ReconcileAfter. A commit followed by a crash before the publish needs neither:
// the event is redelivered and the processor publishes what is still owed.
func (d *Dispatcher) reconcile(ctx context.Context) {
	period := min(max(d.opts.ReconcileAfter/4, 100*time.Millisecond), time.Minute)
	var away natsx.Backoff // a failing tick is logged at most once per 10 s
	every(ctx, period, func() {
		d.m.TaskRuns.WithLabelValues("reconcile").Inc()
		tctx, cancel := context.WithTimeout(ctx, tickTimeout)
		defer cancel()
		for range 100 { // catch up in steps of one period, within reason per tick
			n, caught, err := store.ClaimFirstAttempts(tctx, d.db, d.opts.ReconcileAfter, period, 1000, d.publisher(tctx))
			if err != nil {
				if _, logNow, unlogged := away.Fail(time.Now()); logNow && ctx.Err() == nil {
					d.log.Warn("reconcile first attempts", "err", err, "failures_not_logged", unlogged)
				}
				break
			}
			if n > 0 {
				d.log.Warn("republished first attempts whose message was lost", "count", n)
			}
			if caught && n < 1000 {
				break
			}
		}
		n, err := store.ClaimStale(tctx, d.db, d.opts.ReconcileAfter, 1000, d.publisher(tctx))
		if err != nil {
			if _, logNow, unlogged := away.Fail(time.Now()); logNow && ctx.Err() == nil {
				d.log.Warn("reconcile stale deliveries", "err", err, "failures_not_logged", unlogged)
			}
		}
		if n > 0 {
			d.log.Warn("republished stale deliveries", "count", n)
		}
	})
}

func (d *Dispatcher) publisher(ctx context.Context) func([]delivery.Due) error {
	return func(qs []delivery.Due) error { return natsx.PublishDeliveries(ctx, d.js, qs) }
}

// tickTimeout bounds one tick of the scheduler or the reconciler: PostgreSQL that stops
// answering without an error (a network black hole) fails the tick instead of hanging it.
const tickTimeout = 30 * time.Second

// every calls f each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f()
		}
	}
}
