package dispatcher

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestEndpoint(n int) *endpoint {
	return newEndpoint(n, nil)
}

func TestEndpointHealthy(t *testing.T) {
	e := newTestEndpoint(32)
	now := time.Now()
	if !e.healthy(now) {
		t.Fatal("a new endpoint should count as healthy")
	}
	if e.healthy(now.Add(2 * slowAttempt)) {
		t.Fatal("an endpoint that never finished an attempt should stop counting as healthy")
	}
	e.observe(time.Millisecond)
	if !e.healthy(time.Now()) {
		t.Fatal("an endpoint that just finished a short attempt should be healthy")
	}
	if !e.healthy(time.Now().Add(slowAttempt / 2)) {
		t.Fatal("a fast endpoint that finished an attempt half a second ago should still be healthy")
	}
	if e.healthy(time.Now().Add(2 * slowAttempt)) {
		t.Fatal("an endpoint without progress for 2s should not be healthy (hung)")
	}
	slow := newTestEndpoint(32)
	slow.observe(15 * time.Second)
	if slow.healthy(time.Now()) {
		t.Fatal("an endpoint whose attempts time out should not be healthy")
	}
	// 800 ms per attempt, 32 slots: a slot frees every 25 ms on average, too slow to make
	// the whole consumer wait for it.
	busy := newTestEndpoint(32)
	busy.observe(800 * time.Millisecond)
	if busy.healthy(time.Now()) {
		t.Fatal("an endpoint whose slots free every 25 ms should not be waited for")
	}
}

// reserve holds at most 3× concurrency places; a fast, full endpoint makes it wait for one,
// a hung endpoint never does: the delivery is handed back at once.
func TestEndpointReserve(t *testing.T) {
	ctx := context.Background()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	e := newTestEndpoint(1)
	for range 3 {
		if !e.reserve(ctx) {
			t.Fatal("reserve refused a place below the limit")
		}
	}
	if e.enter(ctx, g) != entered {
		t.Fatal("the first reserved delivery did not get the slot")
	}
	go func() { time.Sleep(10 * time.Millisecond); e.leave() }()
	if !e.reserve(ctx) { // fast (new) endpoint: waits for the place leave frees
		t.Fatal("reserve gave up on a fast endpoint that freed a place")
	}
	if n := e.held.Load(); n != 3 {
		t.Fatalf("held = %d after leave and reserve, want 3", n)
	}

	hung := newTestEndpoint(1)
	hung.born = time.Now().Add(-time.Minute)
	hung.held.Store(hung.limit.Load())
	start := time.Now()
	if hung.reserve(ctx) {
		t.Fatal("reserve gave a place beyond the limit")
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("reserve waited %v for an endpoint that makes no progress", d)
	}
	if n := hung.held.Load(); n != hung.limit.Load() {
		t.Fatalf("a refused reserve changed held to %d", n)
	}
}

// A webhook's max_concurrency and rate_limit apply at enter: slots go to waiters in order, a
// waiter whose ctx ends passes its turn on, a larger limit admits waiters at once, and the
// rate spaces attempts.
func TestEndpointSettings(t *testing.T) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	var n, perSecond atomic.Int64 // the webhook's settings, as its cached row would give them
	n.Store(1)
	e := newEndpoint(32, func() (int, float64) { return int(n.Load()), float64(perSecond.Load()) })
	ctx := context.Background()
	if e.enter(ctx, g) != entered {
		t.Fatal("first enter waited")
	}
	cut, cancel := context.WithCancel(ctx)
	gaveUp := make(chan entry)
	go func() { gaveUp <- e.enter(cut, g) }()
	second := make(chan entry)
	time.Sleep(20 * time.Millisecond) // the first waiter queues first
	go func() { second <- e.enter(ctx, g) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if r := <-gaveUp; r != cancelled {
		t.Fatalf("a cancelled waiter got %v", r)
	}
	select {
	case <-second:
		t.Fatal("a waiter entered while the only slot was taken")
	case <-time.After(20 * time.Millisecond):
	}
	n.Store(2) // max_concurrency raised: the waiter gets in without a leave
	e.configure()
	if r := <-second; r != waited {
		t.Fatalf("waiter = %v, want waited", r)
	}
	e.leave()
	e.leave()

	n.Store(8)
	perSecond.Store(20)
	start := time.Now()
	for range 5 {
		if e.enter(ctx, g) == cancelled {
			t.Fatal("cancelled")
		}
		e.leave()
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("5 attempts at 20/s took %v, want at least 200 ms", d)
	}
}
