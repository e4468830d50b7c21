package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// newSweepTestDispatcher is a dispatcher with only what endpoints and the target cache need.
func newSweepTestDispatcher(idle time.Duration) *Dispatcher {
	return &Dispatcher{opts: Options{EndpointConcurrency: 2, IdleAfter: idle},
		endpoints: map[uuid.UUID]*endpoint{}, targets: newTargetCache(nil, nil, time.Second)}
}

// The sweep drops the state of webhooks idle for IdleAfter, endpoint and cached target, and
// keeps every endpoint that holds work: a delivery in flight, one waiting for a slot, one
// waiting for its FIFO turn, a handed-back schedule still ahead; and the target of a kept
// endpoint.
func TestEvictIdleEndpoints(t *testing.T) {
	ctx := context.Background()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	const idle = time.Minute
	d := newSweepTestDispatcher(idle)
	later := time.Now().Add(2 * idle) // as the sweep sees it: every endpoint unused for 2 min

	ids := map[string]uuid.UUID{}
	for _, name := range []string{"idle", "inflight", "waiting", "fifo", "handedBack", "reserved"} {
		ids[name] = uuid.New()
		d.targets.m[ids[name]] = &target{loaded: time.Now().Add(-2 * idle)}
	}
	idleEp, _ := d.place(ctx, ids["idle"])
	idleEp.release() // a delivery came and went

	inflight, _ := d.place(ctx, ids["inflight"])
	if inflight.enter(ctx, g) != entered {
		t.Fatal("no slot")
	}

	waiting, _ := d.place(ctx, ids["waiting"])
	for range 2 { // both slots taken, a third delivery waits for one
		if _, ok := d.place(ctx, ids["waiting"]); !ok {
			t.Fatal("no place")
		}
		waiting.enter(ctx, g)
	}
	waiterCtx, stopWaiter := context.WithCancel(ctx)
	defer stopWaiter()
	waiterDone := make(chan entry)
	go func() { waiterDone <- waiting.enter(waiterCtx, g) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		waiting.mu.Lock()
		queued := len(waiting.waiters)
		waiting.mu.Unlock()
		if queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the third delivery is not waiting for a slot")
		}
	}

	fifo, _ := d.place(ctx, ids["fifo"])
	if !fifo.awaitTurn(ctx, 7) {
		t.Fatal("no turn")
	}

	handedBack, _ := d.place(ctx, ids["handedBack"])
	handedBack.release()
	handedBack.handBackAt(time.Now(), 3*idle) // scheduled after the sweep's "now"

	_, ok := d.place(ctx, ids["reserved"]) // a place taken, its worker not started yet
	if !ok {
		t.Fatal("no place")
	}

	n, m := d.evictIdle(later)
	if n != 1 || m != 1 {
		t.Fatalf("evictIdle dropped %d endpoints and %d targets, want 1 and 1 (the idle webhook's)", n, m)
	}
	if _, ok := d.endpoints[ids["idle"]]; ok {
		t.Fatal("the idle endpoint was kept")
	}
	if !idleEp.gone.Load() {
		t.Fatal("the dropped endpoint is not marked gone")
	}
	if d.targets.peek(ids["idle"]) != nil {
		t.Fatal("the idle webhook's target was kept")
	}
	for name, id := range ids {
		if name == "idle" {
			continue
		}
		if d.endpoints[id] == nil {
			t.Errorf("the %s endpoint was dropped while it holds work", name)
		}
		if d.targets.peek(id) == nil {
			t.Errorf("the %s webhook's target was dropped while its endpoint holds work", name)
		}
	}
	if again := d.endpoint(ids["idle"]); again == idleEp {
		t.Fatal("a dropped endpoint came back from the map")
	}

	// Once the work is done, and idle for IdleAfter, the rest go too.
	inflight.leave()
	waiting.leave()
	if r := <-waiterDone; r != waited {
		t.Fatalf("the waiter got %v, want waited", r)
	}
	waiting.leave()
	waiting.leave()
	fifo.doneTurn(7)
	fifo.release()
	d.endpoints[ids["reserved"]].release()
	n, _ = d.evictIdle(time.Now().Add(4 * idle))
	if want := len(ids); n != want {
		t.Fatalf("after the work ended evictIdle dropped %d endpoints, want %d", n, want)
	}
}

// A lookup that got an endpoint the sweep then dropped takes its place at the webhook's new
// endpoint, never at the dropped one.
func TestPlaceOnDroppedEndpoint(t *testing.T) {
	ctx := context.Background()
	d := newSweepTestDispatcher(time.Minute)
	id := uuid.New()
	old := d.endpoint(id)                        // looked up by the consumer ...
	d.evictIdle(time.Now().Add(2 * time.Minute)) // ... and dropped before it took a place
	if !old.gone.Load() {
		t.Fatal("the idle endpoint was not dropped")
	}
	ep, ok := d.placeAt(ctx, id, old)
	if !ok || ep == old || ep.gone.Load() {
		t.Fatalf("placeAt = %p, %v; want a place at a new endpoint (old %p)", ep, ok, old)
	}
	if old.held.Load() != 0 {
		t.Fatalf("the dropped endpoint still holds %d places", old.held.Load())
	}
	if ep != d.endpoints[id] || ep.held.Load() != 1 {
		t.Fatal("the place is not at the webhook's current endpoint")
	}
}
