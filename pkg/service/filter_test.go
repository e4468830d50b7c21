package service_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// Payload filters end to end: registration and PATCH take a filter and show it; a bad one is a
// 422 naming the part at fault; the processor delivers an event only to the webhooks whose
// filter it matches (over NATS and POST /events alike), counts the others in
// hookline_events_filtered_total, and uses a changed filter for the very next event although it
// caches the subscriptions.
func TestPayloadFilters(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	paid := createType(t, sys, "invoice.paid")
	big, all, eur := servicetest.NewReceiver(t), servicetest.NewReceiver(t), servicetest.NewReceiver(t)

	for _, c := range []struct{ filter, field string }{
		{`"x"`, "filter"},
		{`{"amount":1}`, "filter.amount"},
		{`{"data.amount":{"$regex":"1"}}`, "filter.data.amount.$regex"},
		{`{"$or":[{"data.a":1},{"data.b":{"$in":2}}]}`, "filter.$or[1].data.b.$in"},
	} {
		body := `{"event_type_id":"` + paid + `","user_id":5,"url":"` + big.URL + `","filter":` + c.filter + `}`
		r := sys.Do(t, http.MethodPost, "/webhook/register", body)
		var p struct{ Field string }
		r.Decode(t, &p)
		if r.Status != 422 || p.Field != c.field {
			t.Errorf("register with filter %s = %d %s, want 422 on %s", c.filter, r.Status, r.Raw, c.field)
		}
	}
	wBig := sys.Register(t, 5, big.URL, map[string]any{"event_type_id": paid, "filter": json.RawMessage(`{"data.amount":{"$gte":100}}`)})
	sys.Register(t, 5, all.URL, map[string]any{"event_type_id": paid})
	wEUR := sys.Register(t, 5, eur.URL, map[string]any{"event_type_id": paid,
		"filter": json.RawMessage(`{"$or":[{"data.currency":"EUR"},{"data.tags":{"$contains":"eu"}}]}`)})
	var shown struct{ Filter map[string]any }
	sys.Do(t, http.MethodGet, "/webhook/"+wBig.ID, nil).Decode(t, &shown)
	if shown.Filter["data.amount"] == nil {
		t.Fatalf("GET webhook shows filter %v", shown.Filter)
	}

	n := 0
	// send publishes one event (over NATS, or POST /events when http) and waits until the
	// unfiltered webhook got it, so every filtered decision about it has been made.
	send := func(http_ bool, data map[string]any, extra map[string]any) {
		t.Helper()
		n++
		id := fmt.Sprintf("f-%d", n)
		body := map[string]any{"id": id, "user_id": 5, "data": data}
		for k, v := range extra {
			body[k] = v
		}
		if http_ {
			body["type"] = "invoice.paid"
			if r := sys.Do(t, http.MethodPost, "/events", body); r.Status != 200 {
				t.Fatalf("POST /events = %d %s", r.Status, r.Raw)
			}
		} else {
			publish(t, nc, "events.invoice.paid", id, body)
		}
		servicetest.Eventually(t, 10*time.Second, id+" processed", func() bool {
			return sys.Count(t, "SELECT count(*) FROM events WHERE id = $1", id) == 1 && sys.Count(t,
				"SELECT count(*) FROM delivery_states WHERE event_id = $1 AND status IN ('succeeded', 'failed')", id) ==
				sys.Count(t, "SELECT count(*) FROM deliveries WHERE event_id = $1", id)
		})
	}
	counts := func() string { return fmt.Sprintf("%d/%d/%d", big.Count(), all.Count(), eur.Count()) }

	send(false, map[string]any{"amount": 50, "currency": "EUR"}, nil)
	send(false, map[string]any{"amount": 150, "currency": "USD"}, nil)
	send(true, map[string]any{"amount": 200, "currency": "USD", "tags": []string{"eu"}}, nil)
	if got := counts(); got != "2/3/2" {
		t.Fatalf("big/all/eur received %s, want 2/3/2", got)
	}
	m := sys.Do(t, http.MethodGet, "/metrics", nil)
	if !strings.Contains(string(m.Raw), `hookline_events_filtered_total{type="invoice.paid"} 2`) {
		t.Fatalf("hookline_events_filtered_total is not 2 for invoice.paid")
	}

	// An event addressed to one webhook whose filter it fails: accepted, no delivery, not a
	// rejection. (all is not its target, so wait on the event row alone.)
	publish(t, nc, "events.invoice.paid", "direct-1", map[string]any{"user_id": 5, "webhook_id": wEUR.ID, "data": map[string]any{"currency": "USD"}})
	servicetest.Eventually(t, 10*time.Second, "direct-1 stored", func() bool {
		return sys.Count(t, "SELECT count(*) FROM events WHERE id = 'direct-1'") == 1
	})
	if sys.Count(t, "SELECT count(*) FROM rejected_events") != 0 || sys.Count(t, "SELECT count(*) FROM deliveries WHERE event_id = 'direct-1'") != 0 {
		t.Fatalf("direct-1 was rejected or delivered")
	}

	// PATCH the filter: the processor has these subscriptions cached; the next event must see
	// the new filter. Then null removes it.
	r := sys.Do(t, http.MethodPatch, "/webhook/"+wBig.ID, map[string]any{"filter": map[string]any{"data.currency": "JPY"}})
	if r.Status != 200 || !strings.Contains(string(r.Raw), `"filter":{"data.currency":"JPY"}`) {
		t.Fatalf("PATCH filter = %d %s", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodPatch, "/webhook/"+wBig.ID, `{"filter":{"data.x":{"$gt":[1]}}}`); r.Status != 422 {
		t.Fatalf("PATCH bad filter = %d, want 422", r.Status)
	}
	send(false, map[string]any{"amount": 1000, "currency": "USD"}, nil) // the old filter would match
	send(false, map[string]any{"amount": 1, "currency": "JPY"}, nil)
	if got := counts(); got != "3/5/2" {
		t.Fatalf("after PATCH, big/all/eur received %s, want 3/5/2", got)
	}
	r = sys.Do(t, http.MethodPatch, "/webhook/"+wBig.ID, `{"filter":null}`)
	if r.Status != 200 || !strings.Contains(string(r.Raw), `"filter":null`) {
		t.Fatalf("PATCH filter null = %d %s", r.Status, r.Raw)
	}
	send(false, map[string]any{"amount": 1}, nil)
	if got := counts(); got != "4/6/2" {
		t.Fatalf("filter removed, big/all/eur received %s, want 4/6/2", got)
	}
}
