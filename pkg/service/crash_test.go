package service_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/processor"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/store"
)

// A dispatcher stopped in the middle of an attempt loses nothing: the message goes back to
// JetStream (the NATS server stays up, as in production), and the next dispatcher on the same
// database delivers it at once, with the same webhook-id.
func TestDispatcherStoppedMidFlight(t *testing.T) {
	srv := natstest.Start(t)
	// The receiver timeout outlasts the shutdown grace, so shutdown is what cuts the attempt.
	sys := servicetest.Start(t, func(c *config.Config) { c.ReceiverTimeout = time.Minute; c.NATSURL = srv.ClientURL() })
	var hang atomic.Bool
	hang.Store(true)
	entered := make(chan struct{}, 1)
	rv := servicetest.NewReceiver(t)
	rv.Respond = func(n int, r *http.Request) int {
		if hang.Load() {
			entered <- struct{}{}
			<-r.Context().Done() // held until the dispatcher gives up on it
			return 200
		}
		return 200
	}
	w := sys.Register(t, 1, rv.URL, nil)
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d", r.Status)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt never reached the receiver")
	}
	if err := sys.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_attempts"); n != 0 {
		t.Fatalf("%d attempts recorded for an attempt cut by shutdown, want 0", n)
	}
	hang.Store(false)
	again := servicetest.StartConfig(t, sys.Config, service.Tuning{})
	servicetest.Eventually(t, 20*time.Second, "delivered after restart", func() bool {
		return again.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1
	})
	got := rv.Got()
	if len(got) != 2 || got[0].ID != got[1].ID || string(got[0].Body) != string(got[1].Body) {
		t.Fatalf("receiver got %d requests; want the same delivery twice (same webhook-id and body)", len(got))
	}
}

// A delivery whose message was lost (row committed, publish never happened) is republished by
// the reconciler once it has not moved for HOOKLINE_RECONCILE_AFTER.
func TestReconcilerRepublishesLostDelivery(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.ReconcileAfter = 200 * time.Millisecond })
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	_, err := sys.DB.ExecContext(context.Background(), `INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload,
		occurred_at, status, updated_at) VALUES (gen_random_uuid(), 'lost-1', $1, 'upload.completed', 1, '{"type":"upload.completed"}',
		now(), 'pending', now() - interval '1 hour')`, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Eventually(t, 10*time.Second, "lost delivery republished and delivered", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE event_id = 'lost-1' AND status = 'succeeded'") == 1
	})
	// Every copy the reconciler has published by now has been handled (a second POST would
	// have been made by then).
	nc := natsConn(t, sys)
	servicetest.Eventually(t, 10*time.Second, "every delivery message handled", func() bool {
		return allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	if n := rv.Count(); n != 1 {
		t.Fatalf("receiver got %d, want 1", n)
	}
}

// A copy of an attempt that was already made (the reconciler's, or a late original) is acked
// without a second POST.
func TestStaleCopyNotSentTwice(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	publishMany(t, nc, "once", 1, 1, w.ID)
	servicetest.Eventually(t, 10*time.Second, "delivered", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1
	})
	var id string
	if err := sys.DB.QueryRowContext(context.Background(), "SELECT id FROM deliveries").Scan(&id); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(natsx.DeliverySubject(w.ID))
	m.Data = []byte(`{}`)
	for k, v := range map[string]string{natsx.HeaderDeliveryID: id, natsx.HeaderWebhookID: w.ID, natsx.HeaderAttempt: "1",
		natsx.HeaderEventType: "upload.completed", natsx.HeaderOccurredAt: strconv.FormatInt(time.Now().UnixNano(), 10),
		natsx.HeaderKey: "r1", nats.MsgIdHdr: id + ":1:r1"} {
		m.Header.Set(k, v)
	}
	js, _ := nc.JetStream()
	if _, err := js.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	servicetest.Eventually(t, 10*time.Second, "the copy consumed", func() bool {
		return allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	if n := rv.Count(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1: the stale copy was sent", n)
	}
}

// Entry 0 of the schedule is the wait before the first attempt.
func TestFirstAttemptWaits(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.RetrySchedule = delivery.Schedule{time.Hour} })
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d", r.Status)
	}
	servicetest.Eventually(t, 10*time.Second, "delivery scheduled an hour ahead", func() bool {
		return sys.Count(t, `SELECT count(*) FROM delivery_states WHERE status = 'retrying' AND attempt_count = 0
			AND next_attempt_at > now() + interval '50 minutes'`) == 1
	})
	if rv.Count() != 0 {
		t.Fatalf("receiver got %d before the first wait ended", rv.Count())
	}
}

// A secret that cannot be decrypted ends the delivery failed with the reason, instead of
// looping.
func TestUndecryptableSecretEndsFailed(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	if _, err := sys.DB.ExecContext(context.Background(), "UPDATE webhook_registrations SET secret = 'enc:v1:AAAA' WHERE id = $1", w.ID); err != nil {
		t.Fatal(err)
	}
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d", r.Status)
	}
	servicetest.Eventually(t, 10*time.Second, "delivery failed", func() bool {
		return sys.Count(t, "SELECT count(*) FROM error_log WHERE error LIKE '%decrypt%'") == 1
	})
	if rv.Count() != 0 {
		t.Fatalf("receiver got %d requests", rv.Count())
	}
}

// Retention: events and attempt rows older than their settings are deleted; the delivery,
// with its rendered body, stays.
func TestRetentionPrunes(t *testing.T) {
	cfg := servicetest.NewConfig(t, func(c *config.Config) {
		c.EventRetention, c.AttemptRetention = time.Millisecond, time.Millisecond
	})
	sys := servicetest.StartConfig(t, cfg, service.Tuning{PruneEvery: 50 * time.Millisecond})
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	sys.Upload(t, w.ID, "file", "a.txt", []byte("a"))
	servicetest.Eventually(t, 10*time.Second, "delivered, then event and attempt pruned", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1 &&
			sys.Count(t, "SELECT count(*) FROM events") == 0 && sys.Count(t, "SELECT count(*) FROM delivery_attempts") == 0
	})
}

// An event whose deliveries a processor committed but never published (it or nats-server died
// in between; a restarted server may even hand the event back with NumDelivered = 1) gets them
// published when it comes back: the save finds them existing and owed. Not the reconciler's
// doing: it only looks after 10 minutes.
func TestCommittedButUnpublishedDeliveryPublishedOnRedelivery(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	id := processor.DeliveryID("pre-1", uuid.MustParse(w.ID))
	_, err := sys.DB.ExecContext(context.Background(), `INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload,
		occurred_at) VALUES ($1, 'pre-1', $2, 'upload.completed', 1, '{"type":"upload.completed"}', now())`, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, natsConn(t, sys), "events.upload.completed", "pre-1", map[string]any{"id": "pre-1", "user_id": 1, "data": map[string]any{}})
	servicetest.Eventually(t, 10*time.Second, "the owed delivery published and delivered", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE id = $1 AND status = 'succeeded'", id) == 1
	})
	nc := natsConn(t, sys)
	servicetest.Eventually(t, 10*time.Second, "every message handled", func() bool {
		return allHandled(t, nc, "EVENTS", "processor") && allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	if n := rv.Count(); n != 1 {
		t.Fatalf("receiver got %d, want 1", n)
	}
}

// The scheduler dies after publishing a due retry and before its commit: the row is still
// due, the next scan publishes the same attempt with the same Nats-Msg-Id, and the receiver
// gets the attempt once.
func TestSchedulerCrashBetweenPublishAndCommit(t *testing.T) {
	sys := servicetest.StartConfig(t, servicetest.NewConfig(t, nil), service.Tuning{ScanInterval: time.Hour})
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	_, err := sys.DB.ExecContext(context.Background(), `INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload,
		occurred_at, status, attempt_count, next_attempt_at) VALUES (gen_random_uuid(), 'sched-1', $1, 'upload.completed', 1,
		'{"type":"upload.completed"}', now(), 'retrying', 1, now() - interval '1 second')`, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	nc := natsConn(t, sys)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("scheduler killed before its commit")
	publish := func(qs []delivery.Due) error { return natsx.PublishDeliveries(context.Background(), js, qs) }
	n, err := store.ClaimDue(context.Background(), sys.DB, 10, func(qs []delivery.Due) error {
		if err := publish(qs); err != nil {
			return err
		}
		return crash // the transaction rolls back: the row stays retrying and due
	})
	if !errors.Is(err, crash) || n != 0 {
		t.Fatalf("ClaimDue = %d, %v; want the crash", n, err)
	}
	// The restarted scheduler's scan: the same attempt again, unless the first copy has
	// already been delivered and recorded.
	if _, err := store.ClaimDue(context.Background(), sys.DB, 10, publish); err != nil {
		t.Fatal(err)
	}
	servicetest.Eventually(t, 10*time.Second, "the retry delivered and recorded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE event_id = 'sched-1' AND status = 'succeeded' AND attempt_count = 2") == 1
	})
	// Both publishes are in the stream (the second deduplicated by its Nats-Msg-Id, or stored
	// and found already done) and every message has been handled: a second POST would have
	// been made by then.
	servicetest.Eventually(t, 10*time.Second, "every delivery message handled", func() bool {
		return allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	if got := rv.Count(); got != 1 {
		t.Fatalf("receiver got %d requests for attempt 2, want 1", got)
	}
}

// allHandled is the positive signal that a consumer has finished with everything its stream
// holds: nothing pending, nothing awaiting an ack, and its ack floor at the stream's last
// message (so each message published so far was handed out and acked).
func allHandled(t *testing.T, nc *nats.Conn, stream, consumer string) bool {
	t.Helper()
	js, _ := nc.JetStream()
	info, err := js.ConsumerInfo(stream, consumer)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == streamLastSeq(t, nc, stream)
}

// streamLastSeq is the sequence of the last message stored in stream (0: none yet).
func streamLastSeq(t *testing.T, nc *nats.Conn, stream string) uint64 {
	t.Helper()
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}
