package dispatcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/store"
)

// BenchmarkTailPublish is what the live tail adds to each committed attempt: the hand-written
// record and one core NATS publish, with no tail listening (the server drops it) and with one
// subscriber reading everything; "ack" is a bare core publish of the same size, as each
// message's ack already costs the dispatcher. Compare with store's BenchmarkRecordOutcomes (the
// commit of the same attempt) and egress's BenchmarkDo (its POST).
func BenchmarkTailPublish(b *testing.B) {
	b.Run("ack", func(b *testing.B) {
		s := natstest.Start(b)
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		body := make([]byte, 300)
		b.ReportAllocs()
		for b.Loop() {
			_ = nc.Publish("$JS.ACK.DELIVERIES.dispatcher.1.2.3.4.5", body)
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
	})
	for _, listeners := range []int{0, 1} {
		b.Run(fmt.Sprintf("subscribers=%d", listeners), func(b *testing.B) {
			s := natstest.Start(b)
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			if listeners > 0 {
				sub, err := nc.Subscribe(natsx.AttemptsAll, func(*nats.Msg) {})
				if err != nil {
					b.Fatal(err)
				}
				_ = sub.SetPendingLimits(-1, -1)
				defer sub.Unsubscribe()
			}
			h := nats.Header{natsx.HeaderUserID: {"42"}, natsx.HeaderEventID: {"inv-2026-000123"},
				natsx.HeaderEventType: {"invoice.paid"}}
			o := store.Outcome{DeliveryID: uuid.New(), WebhookID: uuid.New(), Attempt: 1, Attempted: true,
				StatusCode: 200, Latency: 3 * time.Millisecond, At: time.Now(), Status: delivery.StatusSucceeded}
			var t tailBuffer
			b.ReportAllocs()
			for b.Loop() {
				t.publish(nc, h, &o)
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// A committed attempt is published on its user's and webhook's subject, as the record
// delivery.AppendRecord writes; an outcome without a request, or a message without a user,
// publishes nothing (they are published first: one publisher's messages arrive in order, so
// either would be the first one received).
func TestTailPublish(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(natsx.AttemptsAll)
	if err != nil {
		t.Fatal(err)
	}
	hook := uuid.New()
	h := nats.Header{natsx.HeaderUserID: {"42"}, natsx.HeaderEventID: {"inv-1"}, natsx.HeaderEventType: {"invoice.paid"}}
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var tb tailBuffer
	tb.publish(nc, h, &store.Outcome{DeliveryID: uuid.New(), WebhookID: hook, Attempt: 2, Attempted: false, At: at})
	tb.publish(nc, nats.Header{natsx.HeaderEventID: {"inv-1"}}, &store.Outcome{WebhookID: hook, Attempted: true, At: at})
	id := uuid.New()
	tb.publish(nc, h, &store.Outcome{DeliveryID: id, WebhookID: hook, Attempt: 2, Attempted: true, StatusCode: 503,
		Latency: 1500 * time.Microsecond, At: at, Status: delivery.StatusRetrying})
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"delivery_id":"` + id.String() + `","webhook_id":"` + hook.String() + `","event_id":"inv-1","event_type":"invoice.paid",` +
		`"attempt":2,"status":"retrying","status_code":503,"latency_ms":1.5,"error":null,"at":"2026-12-02 10:00:00"}`
	if m.Subject != "hookline.attempts.42."+hook.String() || string(m.Data) != want {
		t.Fatalf("published %s %s\nwant %s %s", m.Subject, m.Data, "hookline.attempts.42."+hook.String(), want)
	}
}
