package dispatcher

import (
	"context"
	"time"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
)

// schedule republishes retries whose next_attempt_at has come, every ScanInterval, in batches
// of up to 1,000 while there are more.
func (d *Dispatcher) schedule(ctx context.Context) {
	publish := func(qs []delivery.Due) error { return natsx.PublishDeliveries(ctx, d.js, qs) }
	every(ctx, d.opts.ScanInterval, func() {
		for {
			n, err := store.ClaimDue(ctx, d.db, 1000, publish)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("publish due retries", "err", err)
				}
				break
			}
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
	publish := func(qs []delivery.Due) error { return natsx.PublishDeliveries(ctx, d.js, qs) }
	period := min(max(d.opts.ReconcileAfter/4, 100*time.Millisecond), time.Minute)
	every(ctx, period, func() {
		for range 100 { // catch up in steps of one period, within reason per tick
			n, caught, err := store.ClaimFirstAttempts(ctx, d.db, d.opts.ReconcileAfter, period, 1000, publish)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("reconcile first attempts", "err", err)
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
		n, err := store.ClaimStale(ctx, d.db, d.opts.ReconcileAfter, 1000, publish)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("reconcile stale deliveries", "err", err)
		}
		if n > 0 {
			d.log.Warn("republished stale deliveries", "count", n)
		}
	})
}

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
