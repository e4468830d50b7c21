package service_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// publishMany publishes n upload.completed events for user to webhook, ids prefix-0…
func publishMany(t *testing.T, nc *nats.Conn, prefix string, n int, user int64, webhookID string) {
	t.Helper()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		body := fmt.Sprintf(`{"id":%q,"user_id":%d,"webhook_id":%q,"data":{"i":%d}}`, id, user, webhookID, i)
		m := nats.NewMsg("events.upload.completed")
		m.Data = []byte(body)
		m.Header.Set(nats.MsgIdHdr, id)
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, nats.ErrTooManyStalledMsgs) {
				t.Fatal(err)
			}
			<-js.PublishAsyncComplete() // the server is busy: let the window empty
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
}

// Deliveries waiting an hour for their next attempt hold no consumer slot: with MaxAckPending
// 100 and 1,000 deliveries parked, the dispatcher consumer has nothing ack-pending, and 100
// fresh deliveries to a healthy endpoint all succeed.
func TestParkedRetriesHoldNoSlots(t *testing.T) {
	cfg := servicetest.NewConfig(t, func(c *config.Config) { c.RetrySchedule = delivery.Schedule{0, time.Hour} })
	sys := servicetest.StartConfig(t, cfg, service.Tuning{DispatchMaxAckPending: 100})
	nc := natsConn(t, sys)

	failing := servicetest.NewReceiver(t)
	failing.Respond = func(int, *http.Request) int { return 500 }
	healthy := servicetest.NewReceiver(t)
	f := sys.Register(t, 1, failing.URL, nil)
	h := sys.Register(t, 1, healthy.URL, nil)

	publishMany(t, nc, "park", 1000, 1, f.ID)
	servicetest.Eventually(t, 60*time.Second, "1,000 deliveries parked for an hour", func() bool {
		return sys.Count(t, `SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'retrying'
			AND attempt_count = 1 AND next_attempt_at > now() + interval '50 minutes'`, f.ID) == 1000
	})
	// The rows are committed before their messages are acked: wait for the acks (the consumer's
	// ack floor at the stream's end). Parked deliveries that kept their messages never get there.
	servicetest.Eventually(t, 20*time.Second, "the dispatcher consumer holds no message for parked deliveries", func() bool {
		return allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	js, _ := nc.JetStream()
	if info, err := js.StreamInfo("DELIVERIES"); err != nil || info.State.Msgs != 0 {
		t.Fatalf("DELIVERIES holds %v messages (err %v), want 0: waits live in PostgreSQL", info.State.Msgs, err)
	}

	// 1,000 parked deliveries against a MaxAckPending of 100: had they kept their messages
	// (a NakWithDelay, or no ack), the fresh ones below would find no slot and never start.
	publishMany(t, nc, "fresh", 100, 1, h.ID)
	servicetest.Eventually(t, 30*time.Second, "100 fresh deliveries succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", h.ID) == 100
	})
	if n := healthy.Count(); n != 100 {
		t.Errorf("healthy receiver got %d, want 100", n)
	}
	if n := failing.Count(); n != 1000 {
		t.Errorf("failing receiver got %d attempts, want 1000 (one each, then parked)", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'retrying'", f.ID); n != 1000 {
		t.Errorf("parked deliveries = %d, want still 1000", n)
	}
}

// An endpoint that hangs cannot starve a healthy one: with 200 deliveries each, all 200
// healthy ones complete while the hung endpoint has at most EndpointConcurrency requests open.
// The dispatcher consumer's MaxAckPending (48) is below the hung endpoint's 200 deliveries:
// without isolation (each delivery waiting in memory for a slot of the hung endpoint) they
// would hold every consumer slot and the healthy deliveries would never start.
func TestHeadOfLineIsolation(t *testing.T) {
	cfg := servicetest.NewConfig(t, func(c *config.Config) {
		c.EndpointConcurrency = 8       // 8 in flight, 24 places (3 x 8) held at most
		c.ReceiverTimeout = time.Minute // longer than the test: the hung requests stay open
	})
	sys := servicetest.StartConfig(t, cfg, service.Tuning{DispatchMaxAckPending: 48})
	nc := natsConn(t, sys)
	release := make(chan struct{})
	var open, maxOpen atomic.Int64
	hung := servicetest.NewReceiver(t)
	hung.Respond = func(int, *http.Request) int {
		n := open.Add(1)
		for {
			m := maxOpen.Load()
			if n <= m || maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		open.Add(-1)
		return 200
	}
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before the receiver closes (cleanups run last-in first-out)
	healthy := servicetest.NewReceiver(t)
	hw := sys.Register(t, 1, hung.URL, nil)
	ok := sys.Register(t, 1, healthy.URL, nil)

	publishMany(t, nc, "hung", 200, 1, hw.ID)
	servicetest.Eventually(t, 20*time.Second, "the hung endpoint saturated", func() bool { return open.Load() == 8 })
	start := time.Now()
	publishMany(t, nc, "ok", 200, 1, ok.ID)
	servicetest.Eventually(t, 30*time.Second, "200 healthy deliveries succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", ok.ID) == 200
	})
	t.Logf("200 healthy deliveries done in %s while %d requests to the hung endpoint were open", time.Since(start).Round(time.Millisecond), open.Load())
	if n := sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", hw.ID); n != 0 {
		t.Fatalf("%d hung deliveries finished before release: the test did not hold them", n)
	}
	if m := maxOpen.Load(); m > 8 {
		t.Fatalf("hung endpoint had %d requests open, above the limit 8", m)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1", hw.ID); n != 0 {
		t.Fatalf("hung endpoint has %d attempt rows; handing back must not use attempts", n)
	}
	releaseAll()
	servicetest.Eventually(t, 60*time.Second, "the hung endpoint's deliveries finish once it answers", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", hw.ID) == 200
	})
}
