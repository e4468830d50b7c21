package service_test

import (
	"context"
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
	servicetest.Eventually(t, 10*time.Second, "5 deliveries", func() bool { return rv.Count() == 5 })

	for _, c := range []struct{ stream, name string }{
		{natsx.DeliveriesStream, natsx.DispatchConsumer}, {natsx.EventsStream, natsx.ProcessorConsumer},
	} {
		if err := js.DeleteConsumer(context.Background(), c.stream, c.name); err != nil {
			t.Fatalf("delete consumer %s: %v", c.name, err)
		}
		send(5)
		servicetest.Eventually(t, 20*time.Second, "deliveries after "+c.name+" was deleted", func() bool { return rv.Count() == n })
	}
	time.Sleep(500 * time.Millisecond) // a replayed event would arrive by now
	if got := rv.Count(); got != n {
		t.Errorf("receiver got %d requests for %d events: the replay delivered some twice", got, n)
	}
}
