package service_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// Per-endpoint settings over HTTP: registration and PATCH take rate_limit, max_concurrency and
// timeout_ms within their ranges (422 otherwise), the webhook object shows them, with the
// service's defaults for those not set, and null puts a setting back to its default.
func TestEndpointSettingsHTTP(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.EndpointConcurrency = 17; c.ReceiverTimeout = 4 * time.Second })
	rv := servicetest.NewReceiver(t)
	type settings struct {
		RateLimit      *int `json:"rate_limit"`
		MaxConcurrency int  `json:"max_concurrency"`
		TimeoutMS      int  `json:"timeout_ms"`
	}
	show := func(s settings) string {
		r := "null"
		if s.RateLimit != nil {
			r = fmt.Sprint(*s.RateLimit)
		}
		return fmt.Sprintf("%s/%d/%d", r, s.MaxConcurrency, s.TimeoutMS)
	}
	var s settings
	plain := sys.Register(t, 1, rv.URL, nil)
	sys.Do(t, http.MethodGet, "/webhook/"+plain.ID, nil).Decode(t, &s)
	if got := show(s); got != "null/17/4000" {
		t.Fatalf("defaults shown as %s, want null/17/4000", got)
	}
	et := sys.EventTypeID(t, "upload.completed")
	for _, c := range []struct{ field, value string }{
		{"rate_limit", "0"}, {"rate_limit", "100001"}, {"rate_limit", "1.5"}, {"rate_limit", `"5"`},
		{"max_concurrency", "0"}, {"max_concurrency", "1025"}, {"timeout_ms", "99"}, {"timeout_ms", "60001"}, {"timeout_ms", "true"},
	} {
		body := `{"event_type_id":"` + et + `","user_id":1,"url":"` + rv.URL + `","` + c.field + `":` + c.value + `}`
		r := sys.Do(t, http.MethodPost, "/webhook/register", body)
		var p struct{ Field string }
		r.Decode(t, &p)
		if r.Status != 422 || p.Field != c.field {
			t.Errorf("register with %s %s = %d %s, want 422 on it", c.field, c.value, r.Status, r.Raw)
		}
	}
	w := sys.Register(t, 1, rv.URL, map[string]any{"rate_limit": 50, "max_concurrency": 4, "timeout_ms": 250})
	sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil).Decode(t, &s)
	if got := show(s); got != "50/4/250" {
		t.Fatalf("registered settings shown as %s, want 50/4/250", got)
	}
	r := sys.Do(t, http.MethodPatch, "/webhook/"+w.ID, `{"rate_limit":100000,"max_concurrency":null}`)
	r.Decode(t, &s)
	if got := show(s); r.Status != 200 || got != "100000/17/250" {
		t.Fatalf("PATCH = %d, settings %s, want 100000/17/250", r.Status, got)
	}
	r = sys.Do(t, http.MethodPatch, "/webhook/"+w.ID, `{"rate_limit":null,"timeout_ms":null}`)
	r.Decode(t, &s)
	if got := show(s); got != "null/17/4000" {
		t.Fatalf("PATCH to defaults: %s, want null/17/4000", got)
	}
	if r := sys.Do(t, http.MethodPatch, "/webhook/"+w.ID, `{"max_concurrency":2048}`); r.Status != 422 {
		t.Fatalf("PATCH max_concurrency 2048 = %d, want 422", r.Status)
	}
}

// The dispatcher honours the settings: max_concurrency bounds the requests in flight,
// rate_limit spaces the attempts, timeout_ms cuts a slow receiver short, while a webhook
// without settings beside each runs at full speed.
func TestEndpointSettingsDispatcher(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)

	// concurrency: both receivers answer after 100 ms and record the most requests at once.
	type peak struct{ now, max atomic.Int64 }
	slow := func(p *peak) func(int, *http.Request) int {
		return func(int, *http.Request) int {
			n := p.now.Add(1)
			for m := p.max.Load(); n > m && !p.max.CompareAndSwap(m, n); m = p.max.Load() {
			}
			time.Sleep(100 * time.Millisecond)
			p.now.Add(-1)
			return 200
		}
	}
	var narrowPeak, widePeak peak
	narrow, wide := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	narrow.Respond, wide.Respond = slow(&narrowPeak), slow(&widePeak)
	sys.Register(t, 1, narrow.URL, map[string]any{"max_concurrency": 2})
	sys.Register(t, 1, wide.URL, nil)
	// rate: 20/s against an unlimited neighbour.
	limited, free := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	sys.Register(t, 2, limited.URL, map[string]any{"rate_limit": 20})
	sys.Register(t, 2, free.URL, nil)
	// timeout: 200 ms against a receiver that takes 1 s; the default (5 s) waits for it.
	hang := func(int, *http.Request) int { time.Sleep(time.Second); return 200 }
	cut, patient := servicetest.NewReceiver(t), servicetest.NewReceiver(t)
	cut.Respond, patient.Respond = hang, hang
	wCut := sys.Register(t, 3, cut.URL, map[string]any{"timeout_ms": 200})
	wPatient := sys.Register(t, 3, patient.URL, nil)

	for i := range 12 {
		publish(t, nc, "events.upload.completed", fmt.Sprintf("c-%d", i), map[string]any{"user_id": 1, "data": map[string]any{}})
	}
	for i := range 30 {
		publish(t, nc, "events.upload.completed", fmt.Sprintf("r-%d", i), map[string]any{"user_id": 2, "data": map[string]any{}})
	}
	publish(t, nc, "events.upload.completed", "t-1", map[string]any{"user_id": 3, "data": map[string]any{}})

	servicetest.Eventually(t, 20*time.Second, "every delivery", func() bool {
		return narrow.Count() == 12 && wide.Count() == 12 && limited.Count() == 30 && free.Count() == 30 && patient.Count() == 1 &&
			sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'failed'", wCut.ID) == 1
	})
	if n := narrowPeak.max.Load(); n != 2 {
		t.Errorf("max_concurrency 2: %d requests at once, want 2", n)
	}
	if n := widePeak.max.Load(); n < 4 {
		t.Errorf("default concurrency: at most %d requests at once, want at least 4", n)
	}

	span := func(rv *servicetest.Receiver) time.Duration {
		got := rv.Got()
		return got[len(got)-1].At.Sub(got[0].At)
	}
	// 30 attempts at 20/s with a burst of one: at least 29 gaps of 50 ms.
	if d := span(limited); d < 1400*time.Millisecond {
		t.Errorf("rate_limit 20: 30 deliveries within %v, want at least 1.4 s", d)
	}
	// Arrival times carry the requests' own jitter (a loaded machine, -race): allow 20%.
	got := limited.Got()
	for i := 20; i < len(got); i++ {
		if d := got[i].At.Sub(got[i-20].At); d < 800*time.Millisecond {
			t.Errorf("rate_limit 20: 21 deliveries within %v", d)
			break
		}
	}
	if d := span(free); d > span(limited)/2 {
		t.Errorf("the unlimited neighbour took %v, the limited one %v: it was held back", d, span(limited))
	}

	var attempts, timedOut int
	if err := sys.DB.QueryRowContext(t.Context(), `SELECT count(*), count(*) FILTER (WHERE a.status_code IS NULL AND a.latency_ms < 900)
		FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, wCut.ID).Scan(&attempts, &timedOut); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 || timedOut != 3 {
		t.Errorf("timeout_ms 200: %d attempts, %d cut short under 900 ms; want 3 and 3", attempts, timedOut)
	}
	if n := sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded'", wPatient.ID); n != 1 {
		t.Errorf("the default timeout did not wait for a 1 s receiver")
	}
}
