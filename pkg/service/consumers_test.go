package service_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// An operator deletes the durable consumers while the system runs: each service re-creates its
// consumer and consumes again, without a restart. The recreated processor consumer replays
// EVENTS, which delivers nothing twice.
func TestDeletedConsumersAreRecreated(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	sys.Register(t, 1, rv.URL, nil)
	nc := natsConn(t, sys)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(count int) {
		for range count {
			n++
			id := "del-" + strconv.Itoa(n)
			publish(t, nc, "events.upload.completed", id, map[string]any{"id": id, "user_id": 1, "data": map[string]any{}})
		}
	}
	send(5)
	// At-least-once: a deleted consumer forgets what it had handed out and not yet seen
	// acked, so a delivery may come twice (same webhook-id); count distinct ones.
	distinct := func() int {
		seen := map[string]bool{}
		for _, r := range rv.Got() {
			seen[r.ID] = true
		}
		return len(seen)
	}
	servicetest.Eventually(t, 10*time.Second, "5 deliveries", func() bool { return distinct() == 5 })

	for _, c := range []struct{ stream, name string }{
		{natsx.DeliveriesStream, natsx.DispatchConsumer}, {natsx.EventsStream, natsx.ProcessorConsumer},
	} {
		if err := js.DeleteConsumer(context.Background(), c.stream, c.name); err != nil {
			t.Fatalf("delete consumer %s: %v", c.name, err)
		}
		send(5)
		deadline := time.Now().Add(20 * time.Second)
		for distinct() != n {
			if time.Now().After(deadline) {
				info := "no consumer"
				if cons, err := js.Consumer(context.Background(), c.stream, c.name); err == nil {
					if ci, err := cons.Info(context.Background()); err == nil {
						info = fmt.Sprintf("pending %d, ack pending %d, waiting %d, delivered %d", ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.Delivered.Stream)
					}
				}
				t.Fatalf("%d of %d deliveries 20 s after %s was deleted; the consumer: %s", distinct(), n, c.name, info)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(500 * time.Millisecond) // a replayed event would arrive by now
	if got := distinct(); got != n {
		t.Errorf("receiver got %d deliveries for %d events", got, n)
	}
	// The replayed EVENTS (the processor's consumer starts over) make no new delivery: every
	// request is for one of the n.
	if sys.Count(t, "SELECT count(*) FROM deliveries") != n {
		t.Errorf("deliveries rows = %d, want %d: the replay created some twice", sys.Count(t, "SELECT count(*) FROM deliveries"), n)
	}
}
