package service_test

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// tableCounts is the number of rows in every table a bad request could touch.
func tableCounts(t *testing.T, sys *servicetest.System) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"event_types", "webhook_registrations", "webhook_configurations", "events", "files", "deliveries", "api_keys"} {
		out[table] = sys.Count(t, "SELECT count(*) FROM "+table)
	}
	return out
}

// Every bad input gets its status, error: true, a message, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	et := sys.EventTypeID(t, "upload.completed")
	w := sys.Register(t, 1, rv.URL, nil)
	other := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": "invoice.paid"})
	if other.Status != 200 {
		t.Fatalf("create event type = %d %s", other.Status, other.Raw)
	}
	var otherType struct{ ID string }
	other.Decode(t, &otherType)
	notUploads := sys.Do(t, http.MethodPost, "/webhook/register", map[string]any{"event_type_id": otherType.ID, "user_id": 1, "url": rv.URL})
	var nu struct{ ID string }
	notUploads.Decode(t, &nu)

	reg := func(fields map[string]any) map[string]any {
		b := map[string]any{"event_type_id": et, "user_id": 1, "url": "https://example.com/hook"}
		for k, v := range fields {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		field  string
	}{
		{"malformed JSON", "POST", "/webhook/register", `{"user_id": 1,`, 400, ""},
		{"JSON array", "POST", "/webhook/register", `[1,2]`, 400, ""},
		{"missing event_type_id", "POST", "/webhook/register", reg(map[string]any{"event_type_id": nil}), 422, "event_type_id"},
		{"event_type_id not a uuid", "POST", "/webhook/register", reg(map[string]any{"event_type_id": "upload"}), 422, "event_type_id"},
		{"unknown event_type_id", "POST", "/webhook/register", reg(map[string]any{"event_type_id": "00000000-0000-4000-8000-000000000000"}), 422, "event_type_id"},
		{"missing user_id", "POST", "/webhook/register", reg(map[string]any{"user_id": nil}), 422, "user_id"},
		{"user_id a string", "POST", "/webhook/register", reg(map[string]any{"user_id": "1"}), 422, "user_id"},
		{"user_id fractional", "POST", "/webhook/register", reg(map[string]any{"user_id": 1.5}), 422, "user_id"},
		{"user_id zero", "POST", "/webhook/register", reg(map[string]any{"user_id": 0}), 422, "user_id"},
		{"missing url", "POST", "/webhook/register", reg(map[string]any{"url": nil}), 422, "url"},
		{"ftp url", "POST", "/webhook/register", reg(map[string]any{"url": "ftp://example.com/x"}), 422, "url"},
		{"javascript url", "POST", "/webhook/register", reg(map[string]any{"url": "javascript:alert(1)"}), 422, "url"},
		{"url too long", "POST", "/webhook/register", reg(map[string]any{"url": "https://example.com/" + strings.Repeat("a", 2040)}), 422, "url"},
		{"url a number", "POST", "/webhook/register", reg(map[string]any{"url": 5}), 422, "url"},
		{"header with CRLF", "POST", "/webhook/register", reg(map[string]any{"custom_headers": map[string]string{"X-A": "a\r\nHost: evil"}}), 422, "custom_headers"},
		{"webhook-signature header", "POST", "/webhook/register", reg(map[string]any{"custom_headers": map[string]string{"webhook-signature": "v1,x"}}), 422, "custom_headers"},
		{"Host header", "POST", "/webhook/register", reg(map[string]any{"custom_headers": map[string]string{"Host": "evil"}}), 422, "custom_headers"},
		{"headers not strings", "POST", "/webhook/register", reg(map[string]any{"custom_headers": map[string]any{"X-A": 1}}), 422, "custom_headers"},
		{"reserved payload key", "POST", "/webhook/register", reg(map[string]any{"custom_payload": map[string]any{"type": "x"}}), 422, "custom_payload"},
		{"payload not an object", "POST", "/webhook/register", reg(map[string]any{"custom_payload": []int{1}}), 422, "custom_payload"},
		{"upload to non-uuid", "POST", "/upload_file/webhook_id/abc", nil, 404, ""},
		{"upload to unknown webhook", "POST", "/upload_file/webhook_id/00000000-0000-4000-8000-000000000000", nil, 404, ""},
		{"upload not multipart", "POST", "/upload_file/webhook_id/" + w.ID, `{"file":"x"}`, 400, ""},
		{"unknown route", "GET", "/nope", nil, 404, ""},
		{"wrong method", "PUT", "/event_type", nil, 405, ""},
		{"duplicate event type", "POST", "/event_type", map[string]any{"name": "upload.completed"}, 409, ""},
		{"bad event type name", "POST", "/event_type", map[string]any{"name": "Upload Completed!"}, 422, "name"},
		{"event without user", "POST", "/events", map[string]any{"type": "upload.completed", "data": map[string]any{}}, 422, "user_id"},
		{"event data not object", "POST", "/events", map[string]any{"type": "upload.completed", "user_id": 1, "data": "x"}, 422, "data"},
		{"event bad id", "POST", "/events", map[string]any{"id": "has space", "type": "upload.completed", "user_id": 1, "data": map[string]any{}}, 422, "id"},
		{"delivery id not uuid", "GET", "/deliveries/xyz", nil, 404, ""},
		{"retry unknown delivery", "POST", "/deliveries/00000000-0000-4000-8000-000000000000/retry", nil, 404, ""},
		{"recover without since", "POST", "/webhook/" + w.ID + "/recover", nil, 422, "since"},
		{"deliveries bad status", "GET", "/webhook/" + w.ID + "/deliveries?status=done", nil, 422, "status"},
		{"deliveries bad limit", "GET", "/webhook/" + w.ID + "/deliveries?limit=1000", nil, 422, "limit"},
		{"deliveries bad cursor", "GET", "/webhook/" + w.ID + "/deliveries?cursor=!!", nil, 422, "cursor"},
		{"patch unknown field", "PATCH", "/webhook/" + w.ID, map[string]any{"secret": "x"}, 422, "secret"},
		{"patch enabled not bool", "PATCH", "/webhook/" + w.ID, map[string]any{"enabled": "yes"}, 422, "enabled"},
	}
	key2 := userKey(t, sys, 2)
	nc := natsConn(t, sys)
	servicetest.Eventually(t, 10*time.Second, "set-up events handled", func() bool {
		return allHandled(t, nc, "EVENTS", "processor") && allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	before := tableCounts(t, sys)
	seqBefore := streamLastSeq(t, nc, "EVENTS")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := sys.Do(t, c.method, c.path, c.body)
			if r.Status != c.status || !r.Error || r.Message == "" {
				t.Fatalf("%s %s = %d error=%v %q, want %d with error: true", c.method, c.path, r.Status, r.Error, r.Message, c.status)
			}
			var data map[string]string
			r.Decode(t, &data)
			if c.field != "" && (data["field"] != c.field || data["problem"] == "") {
				t.Errorf("data = %v, want field %q with a problem", data, c.field)
			}
		})
	}
	t.Run("event for another user", func(t *testing.T) {
		r := sys.Do(t, http.MethodPost, "/events", map[string]any{"type": "invoice.paid", "user_id": 1, "data": map[string]any{}},
			"Authorization", "Bearer "+key2)
		if r.Status != 403 || !r.Error {
			t.Fatalf("user 2 sending for user 1 = %d %s, want 403", r.Status, r.Raw)
		}
	})
	t.Run("upload without file part", func(t *testing.T) {
		r := sys.Upload(t, w.ID, "document", "a.txt", []byte("a"))
		if r.Status != 422 || !r.Error {
			t.Fatalf("upload without file = %d %s, want 422", r.Status, r.Raw)
		}
	})
	t.Run("upload to webhook not subscribed", func(t *testing.T) {
		r := sys.Upload(t, nu.ID, "file", "a.txt", []byte("a"))
		if r.Status != 422 || !r.Error {
			t.Fatalf("upload = %d %s, want 422", r.Status, r.Raw)
		}
	})
	// A body over its limit is answered 413 and its connection closed unread, which may reach
	// a client still sending as a reset (its buffered 413 then lost). Either way nothing may be
	// stored; the rows are checked below.
	overLimit := func(t *testing.T, path, contentType string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, sys.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+servicetest.AdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("%s over the limit: %v, want a 413 or the connection cut", path, err)
			}
			t.Logf("the connection was cut before the 413 was read: %v", err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 413 || !strings.Contains(string(b), `"error":true`) {
			t.Fatalf("%s = %d %s, want 413", path, resp.StatusCode, b)
		}
	}
	t.Run("body too large", func(t *testing.T) {
		overLimit(t, "/webhook/register", "application/json", []byte(`{"url":"`+strings.Repeat("a", 2<<20)+`"}`))
	})
	t.Run("upload over the limit", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", "big.bin")
		_, _ = fw.Write(bytes.Repeat([]byte("x"), int(sys.Config.MaxUploadBytes)+1))
		_ = mw.Close()
		overLimit(t, "/upload_file/webhook_id/"+w.ID, mw.FormDataContentType(), buf.Bytes())
	})
	// A sentinel event after the bad requests, then wait until the processor and the
	// dispatcher have handled everything in their streams: whatever a bad request had
	// published would have made its rows by then.
	publish(t, nc, "events.invoice.paid", "sentinel-badinput", map[string]any{"id": "sentinel-badinput", "user_id": 1, "data": map[string]any{}})
	servicetest.Eventually(t, 20*time.Second, "the sentinel event delivered and every message handled", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE event_id = 'sentinel-badinput' AND status = 'succeeded'") == 1 &&
			allHandled(t, nc, "EVENTS", "processor") && allHandled(t, nc, "DELIVERIES", "dispatcher")
	})
	if seq := streamLastSeq(t, nc, "EVENTS"); seq != seqBefore+1 {
		t.Errorf("EVENTS grew by %d messages, want 1 (the sentinel): a 4xx must not publish", seq-seqBefore)
	}
	after := tableCounts(t, sys)
	before["events"]++     // the sentinel
	before["deliveries"]++ // its delivery to the invoice.paid webhook
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows expected, %d after bad requests and the sentinel", table, n, after[table])
		}
	}
	if n := sys.Count(t, "SELECT count(*) FROM rejected_events"); n != 0 {
		t.Errorf("rejected_events = %d: a 4xx must not publish", n)
	}
}
