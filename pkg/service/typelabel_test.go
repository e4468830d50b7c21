package service_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// hookline_events_published_total takes a registered event type as its type label and "other"
// for any other name a client sends (POST /events publishes it; the processor rejects it), so
// made-up names cannot grow the series without bound.
func TestPublishedTypeLabel(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	sys.Register(t, 1, rv.URL, nil)
	for i, typ := range []string{"made.up.one", "made.up.two", "upload.completed"} {
		r := sys.Do(t, http.MethodPost, "/events", map[string]any{"id": fmt.Sprintf("label-%d", i), "type": typ,
			"user_id": 1, "data": map[string]any{}})
		if r.Status != 200 {
			t.Fatalf("POST /events type %s = %d %s", typ, r.Status, r.Raw)
		}
	}
	fams := scrape(t, sys)
	for _, c := range []struct {
		label string
		want  float64
	}{{"other", 2}, {"upload.completed", 1}} {
		if v, _ := sample(fams, "hookline_events_published_total", "type", c.label); v != c.want {
			t.Errorf("hookline_events_published_total{type=%q} = %v, want %v", c.label, v, c.want)
		}
	}
	for _, made := range []string{"made.up.one", "made.up.two"} {
		if _, ok := sample(fams, "hookline_events_published_total", "type", made); ok {
			t.Errorf("hookline_events_published_total has a series for the unregistered type %q", made)
		}
	}
}
