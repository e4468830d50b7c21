package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// A JSON body with a field the route does not know is refused with a 422 naming that field
// (a misspelt custom_headers used to register the webhook without its headers), and nothing
// changes: no row, no event, the webhook as it was.
func TestUnknownFieldsRefused(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	et := sys.EventTypeID(t, "upload.completed")
	before := sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil)
	counts := tableCounts(t, sys)

	cases := []struct {
		name, method, path string
		body               map[string]any
		field              string
	}{
		{"misspelt registration field", "POST", "/webhook/register",
			map[string]any{"event_type_id": et, "user_id": 1, "url": rv.URL, "custom_header": map[string]string{"X-A": "b"}}, "custom_header"},
		{"several unknown: the first named", "POST", "/webhook/register",
			map[string]any{"event_type_id": et, "user_id": 1, "url": rv.URL, "zz": 1, "secret": "whsec_x"}, "secret"},
		{"enabled at registration", "POST", "/webhook/register",
			map[string]any{"event_type_id": et, "user_id": 1, "url": rv.URL, "enabled": false}, "enabled"},
		{"misspelt patch field", "PATCH", "/webhook/" + w.ID, map[string]any{"url": "https://example.com/new", "enabeld": false}, "enabeld"},
		{"patch user_id", "PATCH", "/webhook/" + w.ID, map[string]any{"user_id": 2}, "user_id"},
		{"misspelt event type field", "POST", "/event_type", map[string]any{"name": "invoice.paid", "descripton": "x"}, "descripton"},
		{"misspelt event field", "POST", "/events",
			map[string]any{"id": "evt_unknown_field", "type": "upload.completed", "user_id": 1, "webhookid": w.ID, "data": map[string]any{}}, "webhookid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := sys.Do(t, c.method, c.path, c.body)
			var data struct{ Field, Problem string }
			r.Decode(t, &data)
			if r.Status != 422 || !r.Error || data.Field != c.field || data.Problem == "" {
				t.Fatalf("%s %s = %d %s, want 422 naming %q", c.method, c.path, r.Status, r.Raw, c.field)
			}
			if !strings.Contains(r.Message, c.field) {
				t.Errorf("message %q does not name %q", r.Message, c.field)
			}
		})
	}

	// A valid event published after the refused one: once it is stored, the refused one would be too.
	if r := sys.Do(t, http.MethodPost, "/events", map[string]any{"id": "evt_after", "type": "upload.completed", "user_id": 1, "data": map[string]any{}}); r.Status != 200 {
		t.Fatalf("valid event = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "the valid event stored", func() bool {
		return sys.Count(t, "SELECT count(*) FROM events WHERE id = 'evt_after'") == 1
	})
	if n := sys.Count(t, "SELECT count(*) FROM events WHERE id = 'evt_unknown_field'"); n != 0 {
		t.Errorf("the refused event was published")
	}
	counts["events"]++     // evt_after
	counts["deliveries"]++ // evt_after's, to the webhook
	for table := range counts {
		if strings.Contains(table, "succeeded") || strings.Contains(table, "attempts") {
			counts[table] = -1 // evt_after's delivery moves on its own
		}
	}
	after := tableCounts(t, sys)
	for table, n := range counts {
		if n >= 0 && after[table] != n {
			t.Errorf("%s: %d rows after the refused requests, want %d", table, after[table], n)
		}
	}
	if got := sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil); string(got.Data) != string(before.Data) {
		t.Errorf("webhook changed by refused PATCHes:\n%s\nwas\n%s", got.Data, before.Data)
	}
	var name string
	if err := sys.DB.QueryRowContext(context.Background(), "SELECT count(*)::text FROM event_types WHERE name = 'invoice.paid'").Scan(&name); err != nil || name != "0" {
		t.Errorf("event type invoice.paid created by a refused request (%s, %v)", name, err)
	}
}
