package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

const amountSchema = `{"type":"object","required":["amount"],"properties":{
	"amount":{"type":"integer","minimum":0},
	"lines":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"}}}}}}`

// The event catalog over HTTP: a type created with a schema shows it; POST /events whose data
// fails it is a 422 naming the failing path and publishes nothing; PATCH changes the
// description and the schema (null removes it); DELETE is a 409 while a webhook subscribes, a
// 200 after, and a 403 for a user key.
func TestEventCatalogHTTP(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	user := []string{"Authorization", "Bearer " + userKey(t, sys, 7)}

	r := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": "order.paid", "description": "paid",
		"schema": json.RawMessage(amountSchema)})
	if r.Status != 200 {
		t.Fatalf("create with schema = %d %s", r.Status, r.Raw)
	}
	var et struct {
		ID          string
		Description string
		Schema      map[string]any
	}
	r.Decode(t, &et)
	if et.Schema["type"] != "object" {
		t.Fatalf("created type's schema = %v", et.Schema)
	}
	for _, bad := range []any{"{}", json.RawMessage(`{"type":"nonsense"}`), json.RawMessage(`{"$ref":"file:///etc/passwd"}`), json.RawMessage(`[1]`)} {
		r := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": "bad.schema", "schema": bad})
		if r.Status != 422 || !strings.Contains(string(r.Raw), `"field":"schema"`) {
			t.Errorf("create with schema %s = %d %s, want 422 on schema", bad, r.Status, r.Raw)
		}
	}
	w := sys.Register(t, 7, rv.URL, map[string]any{"event_type_id": et.ID})

	post := func(id string, data string) servicetest.Response {
		return sys.Do(t, http.MethodPost, "/events", `{"id":"`+id+`","type":"order.paid","user_id":7,"data":`+data+`}`, user...)
	}
	for _, c := range []struct{ data, field string }{
		{`{}`, "data"},
		{`{"amount":-5}`, "data.amount"},
		{`{"amount":"5"}`, "data.amount"},
		{`{"amount":5,"lines":[{"sku":"a"},{"sku":9}]}`, "data.lines[1].sku"},
	} {
		r := post("bad-1", c.data)
		var p struct{ Field, Problem string }
		r.Decode(t, &p)
		if r.Status != 422 || p.Field != c.field || !strings.Contains(p.Problem, "schema") {
			t.Errorf("POST /events data %s = %d %s, want 422 on %s", c.data, r.Status, r.Raw, c.field)
		}
	}
	if r := post("good-1", `{"amount":5}`); r.Status != 200 {
		t.Fatalf("valid event = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "the valid event delivered", func() bool { return rv.Count() == 1 })
	if n := sys.Count(t, "SELECT count(*) FROM events WHERE id = 'bad-1'"); n != 0 {
		t.Fatalf("a refused event was stored (%d rows)", n)
	}

	// PATCH: the description and the schema; the new schema applies to the next POST.
	r = sys.Do(t, http.MethodPatch, "/event_type/"+et.ID, map[string]any{"description": "an order was paid",
		"schema": json.RawMessage(`{"type":"object","required":["currency"]}`)})
	r.Decode(t, &et)
	if r.Status != 200 || et.Description != "an order was paid" || et.Schema["required"] == nil {
		t.Fatalf("patch = %d %s", r.Status, r.Raw)
	}
	if r := post("good-2", `{"amount":5}`); r.Status != 422 {
		t.Fatalf("after the schema changed, data without currency = %d %s, want 422", r.Status, r.Raw)
	}
	for body, want := range map[string]int{
		`{"name":"order.renamed"}`: 422, // not a field of this body
		`{"schema":"x"}`:           422,
		`{"schema":null}`:          200,
	} {
		if r := sys.Do(t, http.MethodPatch, "/event_type/"+et.ID, body); r.Status != want {
			t.Errorf("PATCH %s = %d %s, want %d", body, r.Status, r.Raw, want)
		}
	}
	if r := post("good-3", `{"anything":true}`); r.Status != 200 {
		t.Fatalf("schema removed, event = %d %s", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodPatch, "/event_type/"+et.ID, `{"description":"x"}`, user...); r.Status != 403 {
		t.Fatalf("PATCH with a user key = %d, want 403", r.Status)
	}
	if r := sys.Do(t, http.MethodPatch, "/event_type/00000000-0000-0000-0000-000000000000", `{"description":"x"}`); r.Status != 404 {
		t.Fatalf("PATCH unknown id = %d, want 404", r.Status)
	}

	// DELETE: 409 while the webhook subscribes (even disabled), 200 once it is deleted.
	if r := sys.Do(t, http.MethodDelete, "/event_type/"+et.ID, nil); r.Status != 409 {
		t.Fatalf("delete subscribed type = %d %s, want 409", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodDelete, "/event_type/"+sys.EventTypeID(t, "upload.completed"), nil); r.Status != 409 {
		t.Fatalf("delete upload.completed = %d %s, want 409", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodDelete, "/webhook/"+w.ID, nil); r.Status != 200 {
		t.Fatalf("delete webhook = %d", r.Status)
	}
	if r := sys.Do(t, http.MethodDelete, "/event_type/"+et.ID, nil, user...); r.Status != 403 {
		t.Fatalf("delete with a user key = %d, want 403", r.Status)
	}
	if r := sys.Do(t, http.MethodDelete, "/event_type/"+et.ID, nil); r.Status != 200 {
		t.Fatalf("delete unsubscribed type = %d %s", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodDelete, "/event_type/"+et.ID, nil); r.Status != 404 {
		t.Fatalf("delete again = %d, want 404", r.Status)
	}
	if n := sys.Count(t, "SELECT count(*) FROM event_types WHERE name = 'order.paid'"); n != 0 {
		t.Fatalf("type still there")
	}
}

// The same schema on NATS: an event whose data fails it is rejected with reason "schema",
// naming the path, and counted; a valid one is delivered. A schema changed by PATCH applies
// to the next event although the processor cached the subscriptions (the version moves).
func TestEventSchemaOnNATS(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	r := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": "order.paid", "schema": json.RawMessage(amountSchema)})
	var et struct{ ID string }
	r.Decode(t, &et)
	sys.Register(t, 3, rv.URL, map[string]any{"event_type_id": et.ID})

	publish(t, nc, "events.order.paid", "ok-1", map[string]any{"user_id": 3, "data": map[string]any{"amount": 1}})
	publish(t, nc, "events.order.paid", "bad-1", map[string]any{"user_id": 3, "data": map[string]any{"amount": -1}})
	servicetest.Eventually(t, 10*time.Second, "one delivered, one rejected", func() bool {
		return rv.Count() == 1 && sys.Count(t, "SELECT count(*) FROM rejected_events") == 1
	})
	var rej []struct{ ID, Reason string }
	sys.Do(t, http.MethodGet, "/events/rejected", nil).Decode(t, &rej)
	if len(rej) != 1 || rej[0].ID != "bad-1" || !strings.HasPrefix(rej[0].Reason, "schema: data.amount: ") {
		t.Fatalf("rejected = %+v, want bad-1 with reason schema: data.amount: …", rej)
	}
	m := sys.Do(t, http.MethodGet, "/metrics", nil)
	if !strings.Contains(string(m.Raw), `hookline_events_rejected_total{reason="schema"} 1`) {
		t.Fatalf("metrics lack the schema rejection")
	}

	// The processor has the subscription cached with the old schema; a PATCH moves the version.
	sys.Do(t, http.MethodPatch, "/event_type/"+et.ID, map[string]any{"schema": json.RawMessage(`{"required":["currency"]}`)})
	publish(t, nc, "events.order.paid", "bad-2", map[string]any{"user_id": 3, "data": map[string]any{"amount": 1}})
	servicetest.Eventually(t, 10*time.Second, "bad-2 rejected under the new schema", func() bool {
		return sys.Count(t, "SELECT count(*) FROM rejected_events WHERE event_id = 'bad-2' AND reason LIKE 'schema: data: %'") == 1
	})
	if rv.Count() != 1 {
		t.Fatalf("receiver got %d, want 1", rv.Count())
	}
}

// GET /events/{id} shows the event and its deliveries with the status of delivery_states (a
// first-attempt success is 'pending' in its own row); GET /events filters by type and time
// and pages; a user key sees its own events only.
func TestEventLog(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	ok1, fails := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	fails.Respond = func(int, *http.Request) int { return 500 }
	paid := createType(t, sys, "invoice.paid")
	w1 := sys.Register(t, 4, ok1.URL, map[string]any{"event_type_id": paid})
	w2 := sys.Register(t, 4, fails.URL, map[string]any{"event_type_id": paid})
	sys.Register(t, 9, ok1.URL, map[string]any{"event_type_id": paid})
	owner := []string{"Authorization", "Bearer " + userKey(t, sys, 4)}
	other := []string{"Authorization", "Bearer " + userKey(t, sys, 9)}

	before := time.Now().UTC().Add(-time.Second)
	publish(t, nc, "events.invoice.paid", "inv-1", map[string]any{"user_id": 4, "occurred_at": "2026-11-28T12:00:00Z", "data": map[string]any{"n": 1}})
	servicetest.Eventually(t, 10*time.Second, "both attempted", func() bool { return ok1.Count() == 1 && fails.Count() >= 1 })
	if n := sys.Count(t, "SELECT count(*) FROM deliveries WHERE webhook_id = $1 AND status = 'pending'", w1.ID); n != 1 {
		t.Fatalf("the first-attempt success is not 'pending' in its row (%d): this test needs that", n)
	}
	var ev struct {
		UserID     int64 `json:"user_id"`
		Data       map[string]any
		Deliveries []struct {
			ID        string
			WebhookID string `json:"webhook_id"`
			Status    string
		}
	}
	r := sys.Do(t, http.MethodGet, "/events/inv-1", nil, owner...)
	if r.Status != 200 {
		t.Fatalf("GET /events/inv-1 = %d %s", r.Status, r.Raw)
	}
	var raw map[string]any
	r.Decode(t, &raw)
	r.Decode(t, &ev)
	if raw["id"] != "inv-1" || raw["type"] != "invoice.paid" || raw["occurred_at"] != "2026-11-28 12:00:00" || raw["received_at"] == nil ||
		ev.UserID != 4 || ev.Data["n"] != 1.0 {
		t.Fatalf("event = %s", r.Raw)
	}
	statuses := map[string]string{}
	for _, d := range ev.Deliveries {
		statuses[d.WebhookID] = d.Status
	}
	if len(ev.Deliveries) != 2 || statuses[w1.ID] != "succeeded" || statuses[w2.ID] == "succeeded" || statuses[w2.ID] == "" {
		t.Fatalf("deliveries = %+v, want %s succeeded and %s not", ev.Deliveries, w1.ID, w2.ID)
	}
	if r := sys.Do(t, http.MethodGet, "/events/inv-1", nil, other...); r.Status != 404 {
		t.Fatalf("another user's event = %d, want 404", r.Status)
	}
	if r := sys.Do(t, http.MethodGet, "/events/inv-1", nil); r.Status != 200 {
		t.Fatalf("admin = %d, want 200", r.Status)
	}
	if r := sys.Do(t, http.MethodGet, "/events/no-such", nil); r.Status != 404 {
		t.Fatalf("unknown event = %d, want 404", r.Status)
	}

	// The list: three more events of user 4 (one of another type), one of user 9.
	// One at a time: concurrent batches may commit in any order, and the list is by receipt.
	for i, id := range []string{"inv-2", "inv-3", "up-1", "inv-9"} {
		subject, user := "events.invoice.paid", 4
		if id == "up-1" {
			subject = "events.upload.completed"
		}
		if id == "inv-9" {
			user = 9
		}
		publish(t, nc, subject, id, map[string]any{"user_id": user, "data": map[string]any{}})
		servicetest.Eventually(t, 10*time.Second, id+" stored", func() bool { return sys.Count(t, "SELECT count(*) FROM events") == i+2 })
	}

	ids := func(path string, headers ...string) ([]string, string) {
		t.Helper()
		r := sys.Do(t, http.MethodGet, path, nil, headers...)
		if r.Status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.Status, r.Raw)
		}
		var items []struct{ ID string }
		r.Decode(t, &items)
		var out []string
		for _, it := range items {
			out = append(out, it.ID)
		}
		var env struct {
			NextCursor string `json:"next_cursor"`
		}
		_ = json.Unmarshal(r.Raw, &env)
		return out, env.NextCursor
	}
	if got, _ := ids("/events?type=invoice.paid", owner...); strings.Join(got, ",") != "inv-3,inv-2,inv-1" {
		t.Fatalf("user 4's invoice.paid = %v, want newest first inv-3,inv-2,inv-1", got)
	}
	if got, _ := ids("/events", other...); strings.Join(got, ",") != "inv-9" {
		t.Fatalf("user 9 sees %v", got)
	}
	if got, _ := ids("/events?user_id=9"); strings.Join(got, ",") != "inv-9" {
		t.Fatalf("admin, user 9: %v", got)
	}
	var all []string
	cursor := ""
	for range 10 {
		page, next := ids("/events?limit=2&user_id=4&cursor="+cursor, owner...)
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 4 || all[3] != "inv-1" {
		t.Fatalf("paged = %v, want 4 events ending with inv-1", all)
	}
	if got, _ := ids("/events?since="+before.Format(time.RFC3339)+"&until="+before.Add(-time.Hour).Format(time.RFC3339), owner...); len(got) != 0 {
		t.Fatalf("since > until gives %v", got)
	}
	if got, _ := ids("/events?since="+time.Now().UTC().Add(time.Hour).Format(time.RFC3339), owner...); len(got) != 0 {
		t.Fatalf("since the future gives %v", got)
	}
	if got, _ := ids("/events?since="+before.Format(time.RFC3339), owner...); len(got) != 4 {
		t.Fatalf("since before gives %v", got)
	}
	for _, q := range []string{"since=soon", "until=x", "type=Bad*Type", "limit=0", "cursor=zz", "user_id=-1"} {
		if r := sys.Do(t, http.MethodGet, "/events?"+q, nil, owner...); r.Status != 422 {
			t.Errorf("GET /events?%s = %d, want 422", q, r.Status)
		}
	}
	if r := sys.Do(t, http.MethodGet, "/events?user_id=9", nil, owner...); r.Status != 403 {
		t.Fatalf("user 4 asking for user 9's events = %d, want 403", r.Status)
	}
}
