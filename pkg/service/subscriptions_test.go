package service_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// The processor caches who receives an event. A webhook registered (or disabled) right before
// an event is published must still get it (or not): the cached answer is checked against the
// subscription version inside the statement that saves the batch.
func TestSubscriptionChangesReachTheNextEvent(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	a, b := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	sys.Register(t, 3, a.URL, nil)
	send := func(n int) {
		t.Helper()
		id := "sub-" + strconv.Itoa(n)
		publish(t, nc, "events.upload.completed", id, map[string]any{"id": id, "user_id": 3, "data": map[string]any{"n": n}})
	}
	for i := range 5 { // the cache now holds user 3's single subscriber
		send(i)
	}
	servicetest.Eventually(t, 10*time.Second, "5 deliveries to a", func() bool { return a.Count() == 5 })

	wb := sys.Register(t, 3, b.URL, nil)
	send(5)
	servicetest.Eventually(t, 10*time.Second, "the event after the registration at both", func() bool {
		return a.Count() == 6 && b.Count() == 1
	})

	if r := sys.Do(t, http.MethodPatch, "/webhook/"+wb.ID, map[string]any{"enabled": false}); r.Status != 200 {
		t.Fatalf("disable = %d %s", r.Status, r.Raw)
	}
	send(6)
	servicetest.Eventually(t, 10*time.Second, "the event after the disable at a only", func() bool { return a.Count() == 7 })
	if n := sys.Count(t, "SELECT count(*) FROM deliveries WHERE webhook_id = $1", wb.ID); n != 1 {
		t.Errorf("the disabled webhook has %d deliveries, want 1 (none after the disable)", n)
	}
}
