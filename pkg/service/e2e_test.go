package service_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// The seed's walk-through: list event types, register a webhook, upload a file; a signed
// webhook arrives with the custom headers and payload.
func TestSeedFlow(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)

	types := sys.Do(t, http.MethodGet, "/event_type", nil)
	if types.Status != 200 || types.Error {
		t.Fatalf("GET /event_type = %d %s", types.Status, types.Raw)
	}
	var list []map[string]string
	types.Decode(t, &list)
	if len(list) != 1 || list[0]["name"] != "upload.completed" || list[0]["description"] != "Event type for file upload operations" {
		t.Fatalf("event types = %v, want the seeded upload.completed", list)
	}

	reg := sys.Do(t, http.MethodPost, "/webhook/register", map[string]any{
		"event_type_id": list[0]["id"], "user_id": 7, "url": rv.URL + "/hook",
		"custom_headers": map[string]string{"X-Tenant": "acme"}, "custom_payload": map[string]any{"env": "prod"},
	})
	if reg.Status != 200 || reg.Message != "Register Webhook Successfully!" {
		t.Fatalf("register = %d %s", reg.Status, reg.Raw)
	}
	var w map[string]any
	reg.Decode(t, &w)
	secret, _ := w["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret = %q, want whsec_…", secret)
	}
	for _, f := range []string{"created_at", "updated_at"} {
		if _, err := time.Parse(time.DateTime, w[f].(string)); err != nil {
			t.Errorf("%s = %v, want YYYY-MM-DD HH:MM:SS", f, w[f])
		}
	}
	rv.Verify(secret)
	id := w["id"].(string)

	up := sys.Upload(t, id, "file", "../../etc/report.txt", []byte("hello, hookline"))
	if up.Status != 200 {
		t.Fatalf("upload = %d %s", up.Status, up.Raw)
	}
	var file struct {
		FileID      string `json:"file_id"`
		EventID     string `json:"event_id"`
		WebhookID   string `json:"webhook_id"`
		FileName    string `json:"file_name"`
		ContentType string `json:"content_type"`
		SHA256      string `json:"sha256"`
		Size        int64  `json:"size"`
	}
	up.Decode(t, &file)
	sum := sha256.Sum256([]byte("hello, hookline"))
	if file.FileName != "report.txt" || file.Size != 15 || file.WebhookID != id || file.ContentType != "text/plain; charset=utf-8" ||
		file.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("upload data = %s", up.Data)
	}

	servicetest.Eventually(t, 10*time.Second, "the webhook", func() bool { return rv.Count() == 1 })
	got := rv.Got()[0]
	if !got.Verified {
		t.Fatalf("signature %q did not verify", got.Signature)
	}
	if got.Header.Get("X-Tenant") != "acme" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", got.Header)
	}
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatal(err)
	}
	data, _ := body["data"].(map[string]any)
	if body["type"] != "upload.completed" || body["env"] != "prod" || data["file_id"] != file.FileID || data["sha256"] != file.SHA256 {
		t.Fatalf("body = %s", got.Body)
	}
	if _, err := time.Parse(time.RFC3339, body["timestamp"].(string)); err != nil {
		t.Errorf("timestamp %v: %v", body["timestamp"], err)
	}

	servicetest.Eventually(t, 5*time.Second, "delivery succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded' AND attempt_count = 1") == 1
	})
	if n := sys.Count(t, "SELECT count(*) FROM files WHERE id = $1 AND file_name = 'report.txt' AND size = 15", file.FileID); n != 1 {
		t.Errorf("files rows = %d, want 1", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_attempts WHERE status_code = 200"); n != 1 {
		t.Errorf("attempt rows = %d, want 1", n)
	}
}

// TestSeedReadmeVerbatim runs the seed README's three calls as written there (the
// registration body byte for byte, with only the event type id and receiver URL filled in and
// an API key added): list event types, register with custom headers that include
// "Content-Type: application/json", upload a file. The receiver gets the headers as given.
func TestSeedReadmeVerbatim(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)

	// curl -X GET http://localhost:5000/event_type
	types := sys.Do(t, http.MethodGet, "/event_type", nil)
	var list []struct{ ID, Name string }
	types.Decode(t, &list)
	if types.Status != 200 || len(list) != 1 {
		t.Fatalf("GET /event_type = %d %s", types.Status, types.Raw)
	}

	// curl -X POST http://localhost:5000/webhook/register -H "Content-Type: application/json" -d '…'
	body := `{
    "event_type_id": "` + list[0].ID + `",
    "user_id": 1,
    "url": "` + rv.URL + `/webhook",
    "custom_headers": {
        "Content-Type": "application/json",
        "Authorization": "Bearer yourtokenhere"
    },
    "custom_payload": {
        "key1": "value1",
        "key2": "value2"
    }
}`
	reg := sys.Do(t, http.MethodPost, "/webhook/register", body)
	if reg.Status != 200 || reg.Message != "Register Webhook Successfully!" {
		t.Fatalf("register = %d %s", reg.Status, reg.Raw)
	}
	var w struct{ ID, Secret string }
	reg.Decode(t, &w)
	rv.Verify(w.Secret)

	// curl -X POST http://localhost:5000/upload_file/webhook_id/<id> -F "file=@/path/to/your/file"
	if up := sys.Upload(t, w.ID, "file", "file.txt", []byte("seed")); up.Status != 200 {
		t.Fatalf("upload = %d %s", up.Status, up.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "the webhook", func() bool { return rv.Count() == 1 })
	got := rv.Got()[0]
	if !got.Verified {
		t.Fatalf("signature %q did not verify", got.Signature)
	}
	if ct := got.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("Content-Type = %q, want [application/json]", ct)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer yourtokenhere" {
		t.Errorf("Authorization = %q, want the registered bearer token", a)
	}
	var b map[string]any
	if err := json.Unmarshal(got.Body, &b); err != nil || b["key1"] != "value1" || b["key2"] != "value2" || b["type"] != "upload.completed" {
		t.Fatalf("body = %s (%v)", got.Body, err)
	}

	// Any other Content-Type is refused: the body is JSON.
	bad := strings.Replace(body, `"Content-Type": "application/json"`, `"Content-Type": "text/xml"`, 1)
	r := sys.Do(t, http.MethodPost, "/webhook/register", bad)
	if r.Status != 422 || !strings.Contains(string(r.Raw), "the body is JSON") {
		t.Fatalf("register with text/xml = %d %s, want 422 saying the body is JSON", r.Status, r.Raw)
	}
	if n := sys.Count(t, "SELECT count(*) FROM webhook_registrations"); n != 1 {
		t.Errorf("webhook_registrations = %d after the refused registration, want 1", n)
	}
}

// A receiver that answers 500 twice and then 200 gets three attempts, same webhook-id, same
// body, and the delivery ends succeeded.
func TestRetryThenSuccess(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	rv.Respond = func(n int, _ *http.Request) int {
		if n <= 2 {
			return 500
		}
		return 200
	}
	w := sys.Register(t, 1, rv.URL, nil)
	rv.Verify(w.Secret)
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "delivery succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1
	})
	got := rv.Got()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for _, g := range got {
		if g.ID != got[0].ID || string(g.Body) != string(got[0].Body) || !g.Verified {
			t.Fatalf("attempts differ: id %q vs %q, verified %v", g.ID, got[0].ID, g.Verified)
		}
	}
	rows, err := sys.DB.QueryContext(context.Background(), "SELECT attempt, status_code FROM delivery_attempts ORDER BY attempt")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var codes []int
	for rows.Next() {
		var a, c int
		if err := rows.Scan(&a, &c); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, c)
	}
	if len(codes) != 3 || codes[0] != 500 || codes[1] != 500 || codes[2] != 200 {
		t.Fatalf("attempt status codes = %v, want [500 500 200]", codes)
	}
	if n := sys.Count(t, "SELECT count(*) FROM error_log"); n != 0 {
		t.Errorf("error_log rows = %d, want 0", n)
	}
}

// A receiver that always answers 500 gets every attempt of the schedule; the delivery ends
// failed with an error_log row.
func TestAlwaysFailingEndsFailed(t *testing.T) {
	sys := servicetest.Start(t, nil) // schedule of 3 attempts
	rv := servicetest.NewReceiver(t)
	rv.Respond = func(int, *http.Request) int { return 500 }
	w := sys.Register(t, 1, rv.URL, nil)
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "delivery failed", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'failed' AND attempt_count = 3") == 1
	})
	if n := rv.Count(); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM error_log WHERE error LIKE '%500%' AND attempt = 3"); n != 1 {
		t.Errorf("error_log rows = %d, want 1", n)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_attempts"); n != 3 {
		t.Errorf("attempt rows = %d, want 3", n)
	}
}
