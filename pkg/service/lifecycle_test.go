package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/webhook"
)

type deliveryJSON struct {
	ID             string `json:"id"`
	WebhookID      string `json:"webhook_id"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	Status         string `json:"status"`
	AttemptCount   int    `json:"attempt_count"`
	LastStatusCode *int   `json:"last_status_code"`
	Attempts       []struct {
		Attempt    int     `json:"attempt"`
		StatusCode *int    `json:"status_code"`
		Error      *string `json:"error"`
		LatencyMS  float64 `json:"latency_ms"`
	} `json:"attempts"`
}

// The delivery log lists newest first with a cursor and a status filter; a failed delivery can
// be retried singly (same webhook-id, numbering continues) or recovered in bulk.
func TestDeliveryLogAndReplay(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.RetrySchedule = delivery.Schedule{0, 10 * time.Millisecond} })
	nc := natsConn(t, sys)
	var healthyNow atomic.Bool // set by the test, read by the receiver's handlers
	rv := servicetest.NewReceiver(t)
	rv.Respond = func(int, *http.Request) int {
		if healthyNow.Load() {
			return 204
		}
		return 503
	}
	w := sys.Register(t, 1, rv.URL, nil)
	publishMany(t, nc, "log", 5, 1, w.ID)
	servicetest.Eventually(t, 10*time.Second, "5 failed deliveries", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'failed' AND attempt_count = 2") == 5
	})

	var seen []deliveryJSON
	cursor := ""
	for page := 0; page < 5; page++ {
		r := sys.Do(t, http.MethodGet, "/webhook/"+w.ID+"/deliveries?status=failed&limit=2"+cursor, nil)
		var items []deliveryJSON
		r.Decode(t, &items)
		seen = append(seen, items...)
		var env struct {
			Next string `json:"next_cursor"`
		}
		_ = json.Unmarshal(r.Raw, &env)
		if env.Next == "" {
			break
		}
		cursor = "&cursor=" + env.Next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %d deliveries, want 5", len(seen))
	}
	for _, d := range seen {
		if d.Status != "failed" || d.AttemptCount != 2 || d.LastStatusCode == nil || *d.LastStatusCode != 503 || d.EventType != "upload.completed" {
			t.Fatalf("delivery %+v", d)
		}
	}
	if r := sys.Do(t, http.MethodGet, "/webhook/"+w.ID+"/deliveries?status=succeeded", nil); string(r.Data) != "[]" {
		t.Fatalf("succeeded filter = %s, want []", r.Data)
	}

	one := seen[0].ID
	var d deliveryJSON
	sys.Do(t, http.MethodGet, "/deliveries/"+one, nil).Decode(t, &d)
	if len(d.Attempts) != 2 || d.Attempts[0].Attempt != 1 || d.Attempts[1].Attempt != 2 || *d.Attempts[0].StatusCode != 503 {
		t.Fatalf("attempts = %+v, want two 503s oldest first", d.Attempts)
	}

	healthyNow.Store(true)
	if r := sys.Do(t, http.MethodPost, "/deliveries/"+one+"/retry", nil); r.Status != 202 {
		t.Fatalf("retry = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "the retried delivery succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE id = $1 AND status = 'succeeded' AND attempt_count = 3", one) == 1
	})
	got := rv.Got()
	last := got[len(got)-1]
	if last.ID != one {
		t.Fatalf("retry sent webhook-id %q, want the delivery id %q", last.ID, one)
	}
	if r := sys.Do(t, http.MethodPost, "/deliveries/"+one+"/retry", nil); r.Status != 409 {
		t.Fatalf("retry of a succeeded delivery = %d, want 409", r.Status)
	}

	since := time.Now().UTC().Add(-time.Hour).Format(time.DateTime)
	r := sys.Do(t, http.MethodPost, "/webhook/"+w.ID+"/recover?since="+strings.ReplaceAll(since, " ", "%20"), nil)
	var rec struct {
		Requeued int `json:"requeued"`
	}
	r.Decode(t, &rec)
	if r.Status != 202 || rec.Requeued != 4 {
		t.Fatalf("recover = %d %s, want 202 with 4 requeued", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "all deliveries succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 5
	})
}

// PATCH, DELETE, 410 Gone, the failure window and secret rotation.
func TestWebhookLifecycle(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) {
		c.RetrySchedule = delivery.Schedule{0, 10 * time.Millisecond, 10 * time.Millisecond}
		c.DisableAfter = time.Millisecond
	})
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)

	t.Run("get and patch", func(t *testing.T) {
		var got map[string]any
		r := sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil)
		r.Decode(t, &got)
		if _, has := got["secret"]; has || got["enabled"] != true || got["url"] != rv.URL {
			t.Fatalf("GET webhook = %s", r.Data)
		}
		r = sys.Do(t, http.MethodPatch, "/webhook/"+w.ID, map[string]any{"custom_headers": map[string]string{"X-V": "2"},
			"custom_payload": map[string]any{"source": "patched"}})
		if r.Status != 200 {
			t.Fatalf("PATCH = %d %s", r.Status, r.Raw)
		}
		publishMany(t, nc, "patched", 1, 1, w.ID)
		servicetest.Eventually(t, 10*time.Second, "delivery with new headers", func() bool { return rv.Count() == 1 })
		g := rv.Got()[0]
		if g.Header.Get("X-V") != "2" || !strings.Contains(string(g.Body), `"source":"patched"`) {
			t.Fatalf("after PATCH got headers %v body %s", g.Header, g.Body)
		}
	})

	t.Run("rotate secret signs with both", func(t *testing.T) {
		r := sys.Do(t, http.MethodPost, "/webhook/"+w.ID+"/rotate-secret", nil)
		var rot struct {
			Secret string `json:"secret"`
		}
		r.Decode(t, &rot)
		if r.Status != 200 || !strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == w.Secret {
			t.Fatalf("rotate = %d %s", r.Status, r.Raw)
		}
		before := rv.Count()
		time.Sleep(1100 * time.Millisecond) // the dispatcher caches a webhook's settings for 1 s
		publishMany(t, nc, "rotated", 1, 1, w.ID)
		servicetest.Eventually(t, 10*time.Second, "delivery after rotation", func() bool { return rv.Count() == before+1 })
		g := rv.Got()[before]
		sigs := strings.Fields(g.Signature)
		if len(sigs) != 2 {
			t.Fatalf("webhook-signature = %q, want two space-separated v1 signatures", g.Signature)
		}
		now := time.Now()
		for _, s := range []string{w.Secret, rot.Secret} {
			if err := webhook.Verify(webhook.Secret(s), g.ID, g.Timestamp, g.Signature, g.Body, now, 5*time.Minute); err != nil {
				t.Errorf("signature does not verify with %s…: %v", s[:10], err)
			}
		}
	})

	t.Run("410 disables at once", func(t *testing.T) {
		gone := servicetest.NewReceiver(t)
		gone.Respond = func(int, *http.Request) int { return 410 }
		g := sys.Register(t, 1, gone.URL, nil)
		publishMany(t, nc, "gone", 1, 1, g.ID)
		servicetest.Eventually(t, 10*time.Second, "webhook disabled", func() bool {
			return sys.Count(t, "SELECT count(*) FROM webhook_registrations WHERE id = $1 AND NOT enabled AND disabled_reason LIKE '%410%'", g.ID) == 1
		})
		if n := sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'failed' AND attempt_count = 1", g.ID); n != 1 {
			t.Fatalf("410 delivery not failed after one attempt")
		}
		var got map[string]any
		sys.Do(t, http.MethodGet, "/webhook/"+g.ID, nil).Decode(t, &got)
		if got["enabled"] != false || got["disabled_reason"] == nil || got["disabled_at"] == nil {
			t.Fatalf("disabled webhook = %v", got)
		}
		// A disabled webhook gets nothing new; re-enabling resends nothing.
		publishMany(t, nc, "gone-later", 1, 1, g.ID)
		servicetest.Eventually(t, 10*time.Second, "event rejected for a disabled webhook", func() bool {
			return sys.Count(t, "SELECT count(*) FROM rejected_events WHERE event_id = 'gone-later-0'") == 1
		})
		if r := sys.Do(t, http.MethodPatch, "/webhook/"+g.ID, map[string]any{"enabled": true}); r.Status != 200 {
			t.Fatalf("re-enable = %d", r.Status)
		}
		if gone.Count() != 1 {
			t.Fatalf("gone receiver got %d, want 1", gone.Count())
		}
	})

	t.Run("failing past the window disables", func(t *testing.T) {
		bad := servicetest.NewReceiver(t)
		bad.Respond = func(int, *http.Request) int { return 500 }
		b := sys.Register(t, 1, bad.URL, nil)
		publishMany(t, nc, "bad", 1, 1, b.ID)
		servicetest.Eventually(t, 10*time.Second, "webhook disabled after failing", func() bool {
			return sys.Count(t, "SELECT count(*) FROM webhook_registrations WHERE id = $1 AND NOT enabled AND disabled_reason LIKE 'every attempt failed%'", b.ID) == 1
		})
	})

	t.Run("delete", func(t *testing.T) {
		d := sys.Register(t, 1, rv.URL, nil)
		if r := sys.Do(t, http.MethodDelete, "/webhook/"+d.ID, nil); r.Status != 200 {
			t.Fatalf("DELETE = %d %s", r.Status, r.Raw)
		}
		for _, p := range []string{"/webhook/" + d.ID, "/webhook/" + d.ID + "/deliveries"} {
			if r := sys.Do(t, http.MethodGet, p, nil); r.Status != 404 {
				t.Errorf("GET %s after delete = %d, want 404", p, r.Status)
			}
		}
		if r := sys.Upload(t, d.ID, "file", "a.txt", []byte("a")); r.Status != 404 {
			t.Errorf("upload after delete = %d, want 404", r.Status)
		}
		if r := sys.Do(t, http.MethodDelete, "/webhook/"+d.ID, nil); r.Status != 404 {
			t.Errorf("second DELETE = %d, want 404", r.Status)
		}
	})
}
