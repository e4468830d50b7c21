package service_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// A webhook with "ordering": "fifo" gets its deliveries attempted strictly in event order,
// though its receiver fails at random: every attempt of event n+1 comes after the last attempt
// of event n. A retry holds that webhook's queue only: an unordered webhook of the same user
// gets everything meanwhile.
func TestFIFOOrderWithRandomFailures(t *testing.T) {
	const events = 30
	ms := 30 * time.Millisecond
	cfg := servicetest.NewConfig(t, func(c *config.Config) {
		c.RetrySchedule = delivery.Schedule{0, ms, ms, ms, ms, ms, ms, ms, ms, ms, ms, ms}
	})
	sys := servicetest.StartConfig(t, cfg, service.Tuning{ScanInterval: 20 * time.Millisecond})
	ordered, free := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ordered.Respond = func(int, *http.Request) int {
		if rng.IntN(10) < 3 {
			return 500
		}
		return 200
	}
	w := sys.Register(t, 4, ordered.URL, map[string]any{"ordering": "fifo"})
	var shown struct{ Ordering string }
	sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil).Decode(t, &shown)
	if shown.Ordering != "fifo" {
		t.Fatalf("webhook ordering = %q, want fifo", shown.Ordering)
	}
	sys.Register(t, 4, free.URL, nil)

	nc := natsConn(t, sys)
	for i := range events {
		id := "fifo-" + strconv.Itoa(i)
		publish(t, nc, "events.upload.completed", id, map[string]any{"id": id, "user_id": 4, "data": map[string]any{"n": i}})
	}
	servicetest.Eventually(t, 30*time.Second, "every FIFO delivery succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", w.ID) == events
	})
	if n := free.Count(); n != events {
		t.Errorf("the unordered webhook got %d of %d", n, events)
	}
	last, failures := -1, 0
	for _, r := range ordered.Got() {
		var body struct {
			Data struct{ N int } `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Data.N < last {
			t.Fatalf("event %d attempted after event %d: not in order", body.Data.N, last)
		}
		if body.Data.N == last {
			failures++ // a retry of the same event
		}
		last = body.Data.N
	}
	if last != events-1 || failures == 0 {
		t.Fatalf("last event attempted %d, %d retries; want %d and some retries (the receiver fails 30%%)", last, failures, events-1)
	}
	t.Logf("%d events in order with %d retries", events, failures)
}
