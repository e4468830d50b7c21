package service_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// What PostgreSQL cannot store is refused by POST /events with a 422 naming the field, and
// changes nothing.
func TestPoisonRefusedOverHTTP(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	sys.Register(t, 1, rv.URL, nil)
	for _, tt := range []struct{ body, field string }{
		{`{"id":"p-1","type":"upload.completed","user_id":1,"data":{"x":"a\u0000b"}}`, "data.x"},
		{"{\"id\":\"p-2\",\"type\":\"upload.completed\",\"user_id\":1,\"data\":{\"x\":\"a\xffb\"}}", "data.x"},
		{`{"id":"p-3","type":"upload.completed","user_id":1,"data":{"list":[{"k":"\udc00"}]}}`, "data.list[0].k"},
	} {
		r := sys.Do(t, http.MethodPost, "/events", tt.body)
		if r.Status != 422 || !strings.Contains(string(r.Data), `"field":"`+tt.field+`"`) {
			t.Errorf("POST /events %q = %d %s, want 422 on %s", tt.body, r.Status, r.Raw, tt.field)
		}
	}
	if n := sys.Count(t, "SELECT count(*) FROM events") + sys.Count(t, "SELECT count(*) FROM rejected_events"); n != 0 {
		t.Errorf("%d rows written for refused events, want 0", n)
	}
}

// The same events published on NATS are rejected (listed with their exact bytes), and one that
// only PostgreSQL refuses (a number jsonb cannot hold) is split out of its batch: the events
// around it are delivered, it is listed as rejected with reason "storage", and nothing is
// redelivered forever.
func TestPoisonOnNATSIsSetAside(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	sys.Register(t, 1, rv.URL, nil)
	nc := natsConn(t, sys)
	nul := []byte(`{"id":"nul-1","user_id":1,"data":{"x":"a\u0000b"}}`)
	bad8 := []byte("{\"id\":\"utf-1\",\"user_id\":1,\"data\":{\"x\":\"a\xffb\"}}")
	huge := []byte(`{"id":"huge-1","user_id":1,"data":{"n":1e999999}}`)
	// Published without waiting, so the poison shares a batch with good events.
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for i, body := range [][]byte{nul, bad8, huge} {
		for j := range 5 {
			if _, err := js.PublishAsync("events.upload.completed", []byte(`{"id":"good-`+string(rune('a'+i))+string(rune('0'+j))+`","user_id":1,"data":{"ok":true}}`)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := js.PublishAsync("events.upload.completed", body); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		t.Fatal("publishes not acked")
	}
	servicetest.Eventually(t, 15*time.Second, "15 good events delivered and 3 rejected", func() bool {
		return rv.Count() == 15 && sys.Count(t, "SELECT count(*) FROM rejected_events") == 3
	})
	for _, tt := range []struct {
		id, reason string
		payload    []byte
	}{{"nul-1", "malformed: data.x", nul}, {"utf-1", "malformed: data.x", bad8}, {"huge-1", "storage: PostgreSQL refused the row (SQLSTATE 22", huge}} {
		var (
			reason  string
			payload []byte
		)
		err := sys.DB.QueryRowContext(t.Context(), "SELECT reason, payload FROM rejected_events WHERE event_id = $1", tt.id).Scan(&reason, &payload)
		if err != nil || !strings.HasPrefix(reason, tt.reason) || !bytes.Equal(payload, tt.payload) {
			t.Errorf("rejected %s = %q %q (%v), want reason %q… and the exact bytes", tt.id, reason, payload, err, tt.reason)
		}
	}
	r := sys.Do(t, http.MethodGet, "/events/rejected", nil)
	if r.Status != 200 || !strings.Contains(string(r.Data), `"huge-1"`) || !strings.Contains(string(r.Data), `"nul-1"`) {
		t.Errorf("GET /events/rejected = %d %s, want the poison events listed", r.Status, r.Raw)
	}
	// Nothing keeps coming back: the consumer has nothing pending or unacknowledged.
	servicetest.Eventually(t, 5*time.Second, "EVENTS consumer drained", func() bool {
		return sys.ConsumerIdle(t, "EVENTS", "processor")
	})
}
