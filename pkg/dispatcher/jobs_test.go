package dispatcher_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookline/hookline/pkg/dispatcher"
	"github.com/hookline/hookline/pkg/egress"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// TestJobsRunOnOneReplica: three dispatchers share one database and one NATS; only the one
// holding the lease runs the scheduler (each pass is a PostgreSQL transaction), so three
// replicas poll PostgreSQL as often as one. When that one stops, another takes the jobs over.
func TestJobsRunOnOneReplica(t *testing.T) {
	db := storetest.New(t)
	srv := natstest.Start(t)
	log := slog.New(slog.DiscardHandler)
	const ttl = 2 * time.Second

	type replica struct {
		m      *metrics.Set
		cancel context.CancelFunc
		done   chan error
	}
	rs := make([]*replica, 3)
	for i := range rs {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := natsx.Setup(t.Context(), js, natsx.DefaultTopology()); err != nil {
			t.Fatal(err)
		}
		kv, err := natsx.SetupLeases(t.Context(), js, ttl, 1)
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{m: metrics.New(), done: make(chan error, 1)}
		lease := natsx.NewLease(kv, natsx.DispatcherLease, "replica-"+string(rune('a'+i)), ttl, log)
		d := dispatcher.New(db, js, egress.New(egress.Options{AllowPrivate: true}), r.m, log,
			dispatcher.Options{ScanInterval: 5 * time.Millisecond, ReconcileAfter: 400 * time.Millisecond, Lease: lease})
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(t.Context())
		go func() { r.done <- d.Run(ctx) }()
		rs[i] = r
	}
	stop := func(r *replica) {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("dispatcher stopped with %v", err)
		}
	}
	t.Cleanup(func() {
		for _, r := range rs {
			if r.cancel != nil {
				stop(r)
			}
		}
	})
	passes := func(r *replica) float64 { return testutil.ToFloat64(r.m.TaskRuns.WithLabelValues("schedule")) }

	// waitPasses waits until the live replicas have made n scheduler passes between them, and
	// returns which of them made any.
	waitPasses := func(live []*replica, base []float64, n float64) []int {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			var sum float64
			var ran []int
			for i, r := range live {
				if p := passes(r) - base[i]; p > 0 {
					sum += p
					ran = append(ran, i)
				}
			}
			if sum >= n {
				return ran
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("fewer than %v scheduler passes after 60s", n)
		return nil
	}

	ran := waitPasses(rs, []float64{0, 0, 0}, 100)
	if len(ran) != 1 {
		t.Fatalf("replicas %v ran the scheduler, want exactly one", ran)
	}
	leader := rs[ran[0]]
	reconciles := 0.0
	for _, r := range rs {
		if n := testutil.ToFloat64(r.m.TaskRuns.WithLabelValues("reconcile")); n > 0 {
			reconciles++
		}
	}
	if reconciles > 1 {
		t.Fatalf("%v replicas ran the reconciler, want at most one", reconciles)
	}
	t.Logf("3 replicas: %v scheduler passes, all by replica %d", passes(leader), ran[0])

	// The leader stops (deleting its lease): one of the other two takes the jobs over.
	stop(leader)
	leader.cancel = nil
	var rest []*replica
	for _, r := range rs {
		if r != leader {
			rest = append(rest, r)
		}
	}
	base := []float64{passes(rest[0]), passes(rest[1])}
	if ran := waitPasses(rest, base, 100); len(ran) != 1 {
		t.Fatalf("after the leader stopped, replicas %v ran the scheduler, want exactly one", ran)
	}
}
