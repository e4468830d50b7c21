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

// reconcile republishes deliveries that are pending but have not moved for ReconcileAfter:
// their message was lost between a commit and a publish, or the stream was purged.
func (d *Dispatcher) reconcile(ctx context.Context) {
	publish := func(qs []delivery.Due) error { return natsx.PublishDeliveries(ctx, d.js, qs) }
	every(ctx, min(max(d.opts.ReconcileAfter/4, 100*time.Millisecond), time.Minute), func() {
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
