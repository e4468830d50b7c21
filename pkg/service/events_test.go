package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

func natsConn(t *testing.T, sys *servicetest.System) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publish sends an event body to events.<typ> with a Nats-Msg-Id and waits for the ack.
func publish(t *testing.T, nc *nats.Conn, subject, msgID string, body any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg(subject)
	m.Data = raw
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(m); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

func createType(t *testing.T, sys *servicetest.System, name string) string {
	t.Helper()
	r := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": name, "description": "test type"})
	if r.Status != 200 {
		t.Fatalf("create event type %s = %d %s", name, r.Status, r.Raw)
	}
	var et struct{ ID string }
	r.Decode(t, &et)
	return et.ID
}

// Another service publishes straight to events.<type>; every enabled webhook of that user
// subscribed to the type gets one delivery; others get nothing.
func TestEventsFromNATSFanOut(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	paid := createType(t, sys, "invoice.paid")
	a, b, c, d := servicetest.NewReceiver(t), servicetest.NewReceiver(t), servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	sys.Register(t, 5, a.URL, map[string]any{"event_type_id": nil, "event_type_ids": []string{paid, sys.EventTypeID(t, "upload.completed")}})
	sys.Register(t, 5, b.URL, map[string]any{"event_type_id": paid})
	sys.Register(t, 5, c.URL, nil)                                   // user 5, other type
	sys.Register(t, 6, d.URL, map[string]any{"event_type_id": paid}) // other user
	disabled := sys.Register(t, 5, d.URL, map[string]any{"event_type_id": paid})
	if r := sys.Do(t, http.MethodPatch, "/webhook/"+disabled.ID, map[string]any{"enabled": false}); r.Status != 200 {
		t.Fatalf("disable = %d %s", r.Status, r.Raw)
	}

	publish(t, nc, "events.invoice.paid", "inv-1", map[string]any{"id": "inv-1", "user_id": 5, "data": map[string]any{"amount": 42}})
	servicetest.Eventually(t, 10*time.Second, "two deliveries", func() bool { return a.Count() == 1 && b.Count() == 1 })
	var body struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(a.Got()[0].Body, &body); err != nil || body.Type != "invoice.paid" || body.Data["amount"] != 42.0 {
		t.Fatalf("body = %s (%v)", a.Got()[0].Body, err)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_states WHERE event_id = 'inv-1'"); n != 2 {
		t.Fatalf("deliveries of inv-1 = %d, want 2", n)
	}
	// POST /events goes the same way.
	r := sys.Do(t, http.MethodPost, "/events", map[string]any{"type": "invoice.paid", "user_id": 5, "data": map[string]any{"n": 2}})
	if r.Status != 200 {
		t.Fatalf("POST /events = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "the HTTP event delivered", func() bool { return a.Count() == 2 && b.Count() == 2 })
	// An explicit webhook_id narrows the fan-out to that webhook.
	var aw struct{ ID string }
	sys.Do(t, http.MethodGet, "/webhooks?user_id=5", nil)
	list := sys.Do(t, http.MethodGet, "/webhooks?user_id=5&limit=100", nil)
	var hooks []struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	}
	list.Decode(t, &hooks)
	for _, h := range hooks {
		if h.URL == a.URL {
			aw.ID = h.ID
		}
	}
	publish(t, nc, "events.invoice.paid", "", map[string]any{"id": "inv-3", "user_id": 5, "webhook_id": aw.ID, "data": map[string]any{}})
	servicetest.Eventually(t, 10*time.Second, "the targeted event", func() bool { return a.Count() == 3 })
	if b.Count() != 2 || c.Count() != 0 || d.Count() != 0 {
		t.Fatalf("counts a=%d b=%d c=%d d=%d, want 3 2 0 0", a.Count(), b.Count(), c.Count(), d.Count())
	}
	// A known user with no subscriber of the type: accepted, zero deliveries, not rejected.
	createType(t, sys, "nobody.listens")
	publish(t, nc, "events.nobody.listens", "q-1", map[string]any{"user_id": 5, "data": map[string]any{}})
	servicetest.Eventually(t, 10*time.Second, "the event stored", func() bool {
		return sys.Count(t, "SELECT count(*) FROM events WHERE id = 'q-1'") == 1
	})
	if n := sys.Count(t, "SELECT count(*) FROM rejected_events"); n != 0 {
		t.Fatalf("rejected_events = %d, want 0", n)
	}
}

// A malformed event, an unknown type, an unknown user or a foreign webhook id is terminated,
// kept in rejected_events, listed by GET /events/rejected and counted; never redelivered.
func TestRejectedEvents(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	mine := sys.Register(t, 1, rv.URL, nil)
	theirs := sys.Register(t, 2, rv.URL, nil)
	_ = mine
	publish(t, nc, "events.upload.completed", "bad-1", []byte(`{"user_id": "one"`))
	publish(t, nc, "events.no.such.type", "bad-2", map[string]any{"user_id": 1, "data": map[string]any{}})
	publish(t, nc, "events.upload.completed", "bad-3", map[string]any{"user_id": 999, "data": map[string]any{}})
	publish(t, nc, "events.upload.completed", "bad-4", map[string]any{"user_id": 1, "webhook_id": theirs.ID, "data": map[string]any{}})
	servicetest.Eventually(t, 10*time.Second, "four rejections", func() bool {
		return sys.Count(t, "SELECT count(*) FROM rejected_events") == 4
	})
	r := sys.Do(t, http.MethodGet, "/events/rejected?limit=3", nil)
	var page []struct {
		ID      *string `json:"id"`
		Subject string  `json:"subject"`
		Reason  string  `json:"reason"`
		Payload string  `json:"payload"`
	}
	r.Decode(t, &page)
	var env struct {
		NextCursor string `json:"next_cursor"`
	}
	_ = json.Unmarshal(r.Raw, &env)
	if r.Status != 200 || len(page) != 3 || env.NextCursor == "" {
		t.Fatalf("GET /events/rejected = %d, %d items, cursor %q", r.Status, len(page), env.NextCursor)
	}
	r2 := sys.Do(t, http.MethodGet, "/events/rejected?limit=3&cursor="+env.NextCursor, nil)
	var rest []struct {
		Reason  string `json:"reason"`
		Payload string `json:"payload"`
	}
	r2.Decode(t, &rest)
	all := append([]string{}, page[0].Reason, page[1].Reason, page[2].Reason)
	for _, x := range rest {
		all = append(all, x.Reason)
	}
	// Batches run concurrently, so the order among these four is not fixed; each is there once.
	want := map[string]int{"unknown_webhook": 1, "unknown_user": 1, "unknown_type": 1, "malformed": 1}
	for _, r := range all {
		want[strings.SplitN(r, ":", 2)[0]]--
	}
	for reason, n := range want {
		if n != 0 {
			t.Fatalf("reasons = %q: %s appears %d times too few", all, reason, n)
		}
	}
	malformed := sys.Count(t, `SELECT count(*) FROM rejected_events WHERE reason LIKE 'malformed%' AND payload = '{"user_id": "one"'`)
	if len(rest) != 1 || malformed != 1 {
		t.Fatalf("second page %d items, malformed payload kept as sent %d times; want 1 and 1", len(rest), malformed)
	}
	// User keys may not read the rejected list.
	if r := sys.Do(t, http.MethodGet, "/events/rejected", nil, "Authorization", "Bearer "+userKey(t, sys, 1)); r.Status != 403 {
		t.Fatalf("user key on /events/rejected = %d, want 403", r.Status)
	}
	// Terminated, not pending: the consumer has nothing left to redeliver.
	servicetest.Eventually(t, 5*time.Second, "consumer drained", func() bool {
		return consumerPending(t, nc, "EVENTS", "processor") == 0
	})
	if rv.Count() != 0 {
		t.Fatalf("receiver got %d requests, want 0", rv.Count())
	}
}

// The processor fed the same event more than once creates no second file row, event or
// delivery, and the receiver gets one POST: three copies published together (a publisher
// retrying with new Nats-Msg-Ids, possibly one batch); a copy published after the first was
// committed and acked; and every copy handed out again after commit by a consumer that lost
// its state (deleted by an operator while the processor was down, re-created at start: it
// redelivers the stream from the start).
func TestProcessorIdempotent(t *testing.T) {
	srv := natstest.Start(t) // outlives the system's restart below
	sys := servicetest.Start(t, func(c *config.Config) { c.NATSURL = srv.ClientURL() })
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 3, rv.URL, nil)
	fileID := "0194a000-0000-7000-8000-000000000001"
	ev := map[string]any{"id": "upl-1", "user_id": 3, "webhook_id": w.ID, "data": map[string]any{
		"file_id": fileID, "webhook_id": w.ID, "file_name": "a.txt", "size": 1, "content_type": "text/plain", "sha256": "00"}}
	check := func(t *testing.T, sys *servicetest.System, published uint64) {
		t.Helper()
		// Positive signal: every copy published so far is in the stream and acked by the
		// processor, and every delivery message it made has been handled.
		servicetest.Eventually(t, 20*time.Second, "every copy handled", func() bool {
			return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1 &&
				streamLastSeq(t, nc, "EVENTS") == published && allHandled(t, nc, "EVENTS", "processor") &&
				allHandled(t, nc, "DELIVERIES", "dispatcher")
		})
		for q, want := range map[string]int{
			"SELECT count(*) FROM files WHERE id = '" + fileID + "'": 1,
			"SELECT count(*) FROM events WHERE id = 'upl-1'":         1,
			"SELECT count(*) FROM deliveries":                        1,
			"SELECT count(*) FROM delivery_attempts":                 1,
		} {
			if n := sys.Count(t, q); n != want {
				t.Errorf("%s = %d, want %d", q, n, want)
			}
		}
		if n := rv.Count(); n != 1 {
			t.Errorf("receiver got %d requests, want 1", n)
		}
	}
	for i := 0; i < 3; i++ {
		publish(t, nc, "events.upload.completed", fmt.Sprintf("attempt-%d", i), ev)
	}
	check(t, sys, 3)

	publish(t, nc, "events.upload.completed", "after-commit", ev)
	check(t, sys, 4)

	if err := sys.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	js, _ := nc.JetStream()
	if err := js.DeleteConsumer("EVENTS", "processor"); err != nil {
		t.Fatal(err)
	}
	again := servicetest.StartConfig(t, sys.Config, service.Tuning{})
	check(t, again, 4)
	info, err := js.ConsumerInfo("EVENTS", "processor")
	if err != nil || info.Delivered.Stream != 4 {
		t.Fatalf("re-created consumer delivered up to %v (err %v), want all 4 copies redelivered", info, err)
	}
}

// consumerPending is what the consumer still has to deliver or have acked.
func consumerPending(t *testing.T, nc *nats.Conn, stream, consumer string) int {
	t.Helper()
	js, _ := nc.JetStream()
	info, err := js.ConsumerInfo(stream, consumer, nats.Context(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return int(info.NumPending) + info.NumAckPending
}
