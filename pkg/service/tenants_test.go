package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// accepted is the data of a POST /events answer.
type accepted struct {
	ID        string `json:"id"`
	Duplicate *bool  `json:"duplicate"`
}

func postEvent(t *testing.T, sys *servicetest.System, key string, body map[string]any) (int, accepted, servicetest.Response) {
	t.Helper()
	r := sys.Do(t, http.MethodPost, "/events", body, "Authorization", "Bearer "+key)
	var a accepted
	if r.Status == http.StatusOK {
		r.Decode(t, &a)
	}
	return r.Status, a, r
}

// idle reports that the processor and the dispatcher have nothing left to do.
func idle(t *testing.T, sys *servicetest.System) bool {
	return sys.ConsumerIdle(t, "EVENTS", "processor") && sys.ConsumerIdle(t, "DELIVERIES", "dispatcher")
}

// Event ids are per user (issue 10, hostile tenants): two users who POST the same id make two
// events, each delivered to its own webhook under its own webhook-id; a repeat from one user is
// answered 200 with duplicate: true and creates nothing; GET /events/{id} shows each user its
// own event, and an admin names the user.
func TestEventIDsPerUserOverHTTP(t *testing.T) {
	sys := servicetest.Start(t, nil)
	typ := createType(t, sys, "order.paid")
	ra, rb := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	wa := sys.Register(t, 21, ra.URL, map[string]any{"event_type_id": typ})
	wb := sys.Register(t, 22, rb.URL, map[string]any{"event_type_id": typ})
	ra.Verify(wa.Secret)
	rb.Verify(wb.Secret)
	ka, kb := userKey(t, sys, 21), userKey(t, sys, 22)

	for _, c := range []struct {
		key  string
		user int64
	}{{ka, 21}, {kb, 22}} {
		status, a, r := postEvent(t, sys, c.key, map[string]any{"id": "same-1", "type": "order.paid", "user_id": c.user, "data": map[string]any{"u": c.user}})
		if status != 200 || a.ID != "same-1" || a.Duplicate == nil || *a.Duplicate {
			t.Fatalf("user %d POST /events same-1 = %d %s; want 200 with duplicate false", c.user, status, r.Raw)
		}
	}
	servicetest.Eventually(t, 10*time.Second, "one delivery to each user's webhook", func() bool { return ra.Count() == 1 && rb.Count() == 1 })
	ga, gb := ra.Got()[0], rb.Got()[0]
	if !ga.Verified || !gb.Verified || ga.ID == "" || ga.ID == gb.ID {
		t.Fatalf("webhook-ids %q and %q (verified %v %v); want two distinct, verified", ga.ID, gb.ID, ga.Verified, gb.Verified)
	}

	// The same user again: 200, duplicate, nothing new.
	status, a, r := postEvent(t, sys, ka, map[string]any{"id": "same-1", "type": "order.paid", "user_id": 21, "data": map[string]any{"u": 21}})
	if status != 200 || a.Duplicate == nil || !*a.Duplicate {
		t.Fatalf("repeat of same-1 by user 21 = %d %s; want 200 with duplicate true", status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "consumers idle", func() bool { return idle(t, sys) })
	if n := sys.Count(t, "SELECT count(*) FROM events WHERE id = 'same-1'"); n != 2 {
		t.Fatalf("events with id same-1 = %d, want 2", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM deliveries WHERE event_id = 'same-1'"); n != 2 || ra.Count() != 1 {
		t.Fatalf("deliveries of same-1 = %d, user 21's receiver got %d; want 2 and 1", n, ra.Count())
	}

	// Reading back: each user its own event; an admin must name the user.
	for _, c := range []struct {
		key  string
		user int64
		hook string
	}{{ka, 21, wa.ID}, {kb, 22, wb.ID}} {
		r := sys.Do(t, http.MethodGet, "/events/same-1", nil, "Authorization", "Bearer "+c.key)
		var e struct {
			UserID     int64 `json:"user_id"`
			Deliveries []struct {
				WebhookID string `json:"webhook_id"`
			} `json:"deliveries"`
		}
		if r.Status == 200 {
			r.Decode(t, &e)
		}
		if r.Status != 200 || e.UserID != c.user || len(e.Deliveries) != 1 || e.Deliveries[0].WebhookID != c.hook {
			t.Fatalf("GET /events/same-1 by user %d = %d %s; want its own event and delivery", c.user, r.Status, r.Raw)
		}
	}
	if r := sys.Do(t, http.MethodGet, "/events/same-1", nil); r.Status != 422 || !jsonHas(r.Data, "field", "user_id") {
		t.Fatalf("GET /events/same-1 by admin = %d %s; want 422 on user_id", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodGet, "/events/same-1?user_id=22", nil); r.Status != 200 || !jsonHas(r.Data, "user_id", 22.0) {
		t.Fatalf("GET /events/same-1?user_id=22 by admin = %d %s", r.Status, r.Raw)
	}
	if r := sys.Do(t, http.MethodGet, "/events/same-1?user_id=22", nil, "Authorization", "Bearer "+ka); r.Status != 403 {
		t.Fatalf("GET /events/same-1?user_id=22 by user 21 = %d %s; want 403", r.Status, r.Raw)
	}
}

func jsonHas(raw json.RawMessage, key string, want any) bool {
	var m map[string]any
	return json.Unmarshal(raw, &m) == nil && m[key] == want
}

// The same through NATS: publishers that follow docs/events.md set Nats-Msg-Id to
// "<user_id>:<id>". Two users' events with one id are two events with two deliveries; the
// same user's repeat is a duplicate of the stream (same Nats-Msg-Id) or, past the duplicate
// window (no Nats-Msg-Id here), of the processor: one event, one delivery.
func TestEventIDsPerUserOverNATS(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	typ := createType(t, sys, "order.paid")
	ra, rb := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	sys.Register(t, 31, ra.URL, map[string]any{"event_type_id": typ})
	sys.Register(t, 32, rb.URL, map[string]any{"event_type_id": typ})
	send := func(user int64, msgID string) *nats.PubAck {
		t.Helper()
		m := nats.NewMsg("events.order.paid")
		m.Data, _ = json.Marshal(map[string]any{"id": "n-1", "user_id": user, "data": map[string]any{}})
		if msgID != "" {
			m.Header.Set(nats.MsgIdHdr, msgID)
		}
		ack, err := js.PublishMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	send(31, "31:n-1")
	send(32, "32:n-1")
	servicetest.Eventually(t, 10*time.Second, "one delivery to each user's webhook", func() bool { return ra.Count() == 1 && rb.Count() == 1 })
	if ra.Got()[0].ID == rb.Got()[0].ID {
		t.Fatalf("both deliveries have webhook-id %q", ra.Got()[0].ID)
	}
	if ack := send(31, "31:n-1"); !ack.Duplicate {
		t.Fatal("the same user's repeat with the same Nats-Msg-Id was not a duplicate of the stream")
	}
	send(31, "") // past the duplicate window: the processor keeps one event per user and id
	servicetest.Eventually(t, 10*time.Second, "consumers idle", func() bool { return idle(t, sys) })
	if n := sys.Count(t, "SELECT count(*) FROM events WHERE id = 'n-1'"); n != 2 {
		t.Fatalf("events with id n-1 = %d, want 2", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM deliveries WHERE event_id = 'n-1'"); n != 2 || ra.Count() != 1 {
		t.Fatalf("deliveries of n-1 = %d, user 31's receiver got %d; want 2 and 1", n, ra.Count())
	}
}

// An upload.completed may not name a file or webhook its user does not own (issue 10):
// published on NATS it is rejected (not_owner or unknown_webhook) and changes nothing; sent
// to POST /events it is a 422 naming the field. No files row, no delivery.
func TestUploadCompletedCrossTenant(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	victimRecv, attackerRecv := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	victim := sys.Register(t, 41, victimRecv.URL, nil)
	attacker := sys.Register(t, 42, attackerRecv.URL, nil)
	// The victim's real upload: its file exists, owned by user 41.
	up := sys.Upload(t, victim.ID, "file", "secret.txt", []byte("victim's bytes"))
	if up.Status != 200 {
		t.Fatalf("upload = %d %s", up.Status, up.Raw)
	}
	var victimFile struct {
		FileID string `json:"file_id"`
	}
	up.Decode(t, &victimFile)
	servicetest.Eventually(t, 10*time.Second, "the victim's upload delivered", func() bool { return victimRecv.Count() == 1 })
	files := sys.Count(t, "SELECT count(*) FROM files")

	data := func(fileID, webhookID string) map[string]any {
		return map[string]any{"file_id": fileID, "event_id": "x", "webhook_id": webhookID, "file_name": "a.txt", "size": 1,
			"content_type": "text/plain", "sha256": "00", "uploaded_at": "2026-12-01T00:00:00Z"}
	}
	newFile := func() string { return uuid.NewString() }
	cases := []struct {
		name, id, webhookID string // webhookID: the event's webhook_id ("" for none)
		data                map[string]any
		reason, field       string
	}{
		{"a new file attached to the victim's webhook, sent to the attacker's", "x-1", attacker.ID, data(newFile(), victim.ID), "not_owner", "data.webhook_id"},
		{"a new file attached to the victim's webhook, no webhook_id", "x-2", "", data(newFile(), victim.ID), "not_owner", "data.webhook_id"},
		{"a new file, sent to the victim's webhook", "x-3", victim.ID, data(newFile(), victim.ID), "unknown_webhook", "webhook_id"},
		{"the victim's file, announced to the attacker's webhook", "x-4", attacker.ID, data(victimFile.FileID, attacker.ID), "not_owner", "data.file_id"},
	}
	key := userKey(t, sys, 42)
	for _, c := range cases {
		body := map[string]any{"id": c.id, "type": "upload.completed", "user_id": 42, "data": c.data}
		if c.webhookID != "" {
			body["webhook_id"] = c.webhookID
		}
		// Over HTTP: 422 naming the field, nothing published.
		r := sys.Do(t, http.MethodPost, "/events", body, "Authorization", "Bearer "+key)
		if r.Status != 422 || !jsonHas(r.Data, "field", c.field) {
			t.Errorf("%s: POST /events = %d %s; want 422 on %s", c.name, r.Status, r.Raw, c.field)
		}
		// On NATS: rejected with the reason.
		delete(body, "type")
		publish(t, nc, "events.upload.completed", "42:"+c.id, body)
	}
	servicetest.Eventually(t, 10*time.Second, "four rejections", func() bool {
		return sys.Count(t, "SELECT count(*) FROM rejected_events WHERE event_id LIKE 'x-%'") == len(cases)
	})
	for _, c := range cases {
		if n := sys.Count(t, "SELECT count(*) FROM rejected_events WHERE event_id = $1 AND reason LIKE $2", c.id, c.reason+":%"); n != 1 {
			t.Errorf("%s: rejections with reason %s = %d, want 1", c.name, c.reason, n)
		}
	}
	servicetest.Eventually(t, 10*time.Second, "consumers idle", func() bool { return idle(t, sys) })
	if n := sys.Count(t, "SELECT count(*) FROM files"); n != files {
		t.Errorf("files rows = %d, want %d (none made by the refused events)", n, files)
	}
	if n := sys.Count(t, "SELECT count(*) FROM events WHERE id LIKE 'x-%'") + sys.Count(t, "SELECT count(*) FROM deliveries WHERE event_id LIKE 'x-%'"); n != 0 {
		t.Errorf("events and deliveries of the refused events = %d, want 0", n)
	}
	if victimRecv.Count() != 1 || attackerRecv.Count() != 0 {
		t.Errorf("victim's receiver got %d, attacker's %d; want 1 and 0", victimRecv.Count(), attackerRecv.Count())
	}

	// The attacker's own file on its own webhook is fine.
	own := newFile()
	r := sys.Do(t, http.MethodPost, "/events", map[string]any{"id": "own-1", "type": "upload.completed", "user_id": 42,
		"webhook_id": attacker.ID, "data": data(own, attacker.ID)}, "Authorization", "Bearer "+key)
	if r.Status != 200 {
		t.Fatalf("own upload.completed = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "own upload delivered", func() bool { return attackerRecv.Count() == 1 })
	if n := sys.Count(t, "SELECT count(*) FROM files WHERE id = $1 AND user_id = 42 AND webhook_id = $2", own, attacker.ID); n != 1 {
		t.Fatalf("files row of the attacker's own file = %d, want 1", n)
	}
}
