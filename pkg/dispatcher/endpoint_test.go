package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestEndpoint(n int) *endpoint {
	return &endpoint{slots: make(chan struct{}, n), limit: int64(3 * n), room: make(chan struct{}, 1), born: time.Now()}
}

func TestEndpointFast(t *testing.T) {
	e := newTestEndpoint(1)
	now := time.Now()
	if !e.fast(now) {
		t.Fatal("a new endpoint should count as fast")
	}
	if e.fast(now.Add(2 * newWindow)) {
		t.Fatal("an endpoint that never finished an attempt should stop counting as fast")
	}
	e.observe(time.Millisecond)
	if !e.fast(time.Now()) {
		t.Fatal("an endpoint that just finished a short attempt should be fast")
	}
	if e.fast(time.Now().Add(2 * fastWindow)) {
		t.Fatal("an endpoint without recent progress should not be fast")
	}
	slow := newTestEndpoint(1)
	slow.observe(15 * time.Second)
	if slow.fast(time.Now()) {
		t.Fatal("an endpoint whose attempts time out should not be fast")
	}
}

func TestEndpointAdmitWaitsForFastEndpoint(t *testing.T) {
	ctx := context.Background()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	e := newTestEndpoint(1)
	for range 3 {
		go e.enter(ctx, g) // one in flight, two waiting: full
	}
	for e.held.Load() < e.limit {
		time.Sleep(time.Millisecond)
	}
	go func() { time.Sleep(10 * time.Millisecond); e.leave() }()
	start := time.Now()
	e.admit(ctx)
	if e.held.Load() >= e.limit {
		t.Fatalf("admit returned while the endpoint was still full, after %v", time.Since(start))
	}

	hung := newTestEndpoint(1)
	hung.born = time.Now().Add(-time.Minute)
	hung.held.Store(hung.limit)
	start = time.Now()
	hung.admit(ctx)
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Fatalf("admit waited %v for an endpoint that makes no progress", d)
	}
}
