package service_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// scrape GETs /metrics from the running system and parses the text format.
func scrape(t *testing.T, sys *servicetest.System) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(sys.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	// The zero TextParser is invalid since prometheus/common v0.66: name the scheme.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample sums the series of family name whose labels include want (counter or gauge value,
// or a histogram's sample count); ok is false when no series matches.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, ok
}

// One delivery that succeeds and one whose receiver always answers 500 (3 attempts) move the
// counters, histograms and gauges of DESIGN §10 as expected on the all-in-one's /metrics.
func TestMetricsAfterDeliveryAndFailure(t *testing.T) {
	sys := servicetest.Start(t, nil) // 3 attempts, 20 ms apart
	before := scrape(t, sys)
	for _, c := range []string{"processor", "dispatcher"} {
		for _, name := range []string{"hookline_consumer_pending_messages", "hookline_consumer_ack_pending_messages"} {
			if v, ok := sample(before, name, "consumer", c); !ok || v != 0 {
				t.Errorf("%s{consumer=%q} = %v (present %v) before any event, want 0", name, c, v, ok)
			}
		}
	}

	good := servicetest.NewReceiver(t)
	bad := servicetest.NewReceiver(t)
	bad.Respond = func(int, *http.Request) int { return 500 }
	wGood := sys.Register(t, 1, good.URL, nil)
	wBad := sys.Register(t, 2, bad.URL, nil)
	for _, w := range []servicetest.Webhook{wGood, wBad} {
		if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
			t.Fatalf("upload = %d %s", r.Status, r.Raw)
		}
	}
	if r := sys.Upload(t, "not-a-uuid", "file", "a.txt", []byte("a")); r.Status != 404 {
		t.Fatalf("upload to a bad id = %d, want 404", r.Status)
	}

	// Counters move after the rows are committed: poll the scrape, not the database.
	var after map[string]*dto.MetricFamily
	servicetest.Eventually(t, 15*time.Second, "1 succeeded and 1 failed delivery on /metrics", func() bool {
		after = scrape(t, sys)
		s, _ := sample(after, "hookline_deliveries_total", "outcome", "succeeded")
		f, _ := sample(after, "hookline_deliveries_total", "outcome", "failed")
		return s == 1 && f == 1
	})
	if n := bad.Count(); n != 3 {
		t.Errorf("failing receiver got %d requests, want 3", n)
	}

	const upload = "/upload_file/webhook_id/:webhook_id"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hookline_deliveries_total", []string{"outcome", "succeeded"}, 1},
		{"hookline_deliveries_total", []string{"outcome", "retried"}, 2},
		{"hookline_deliveries_total", []string{"outcome", "failed"}, 1},
		{"hookline_events_published_total", []string{"type", "upload.completed"}, 2},
		{"hookline_events_processed_total", []string{"type", "upload.completed"}, 2},
		{"hookline_http_requests_total", []string{"route", upload, "method", "POST", "status", "200"}, 2},
		{"hookline_http_requests_total", []string{"route", upload, "method", "POST", "status", "404"}, 1},
		{"hookline_http_requests_total", []string{"route", "/webhook/register", "method", "POST", "status", "200"}, 2},
		{"hookline_http_request_duration_seconds", []string{"route", upload, "method", "POST"}, 3},
		{"hookline_delivery_attempt_duration_seconds", nil, 4}, // 1 + 3 attempts
		{"hookline_delivery_end_to_end_seconds", nil, 1},       // only a 2xx ends one
		{"hookline_delivery_retries_scheduled_total", nil, 2},
		{"hookline_deliveries_waiting", nil, 0},
	} {
		got, ok := sample(after, c.name, c.labels...)
		was, _ := sample(before, c.name, c.labels...)
		if !ok || got-was != c.want {
			t.Errorf("%s{%s} moved by %v (present %v), want %v", c.name, strings.Join(c.labels, ","), got-was, ok, c.want)
		}
	}
	// No raw path ever becomes a route label (a series per id).
	for _, m := range after["hookline_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), wGood.ID) {
				t.Errorf("route label %q carries an id", l.GetValue())
			}
		}
	}

	// Both consumers drained: nothing pending, nothing awaiting an ack (-1 would mean the
	// gauge could not read the consumer).
	servicetest.Eventually(t, 5*time.Second, "consumers drained", func() bool {
		after = scrape(t, sys)
		for _, c := range []string{"processor", "dispatcher"} {
			p, ok1 := sample(after, "hookline_consumer_pending_messages", "consumer", c)
			a, ok2 := sample(after, "hookline_consumer_ack_pending_messages", "consumer", c)
			if !ok1 || !ok2 || p != 0 || a != 0 {
				return false
			}
		}
		return true
	})

	// While a receiver holds an attempt open, its message is acknowledged to nobody yet.
	release := make(chan struct{})
	slow := servicetest.NewReceiver(t)
	slow.Respond = func(int, *http.Request) int { <-release; return 200 }
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	t.Cleanup(done) // before the receiver closes and the system stops (cleanups run last-in first-out)
	wSlow := sys.Register(t, 3, slow.URL, nil)
	if r := sys.Upload(t, wSlow.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 10*time.Second, "dispatcher ack pending = 1 during a held attempt", func() bool {
		v, _ := sample(scrape(t, sys), "hookline_consumer_ack_pending_messages", "consumer", "dispatcher")
		return slow.Count() == 1 && v == 1
	})
	done()
	servicetest.Eventually(t, 10*time.Second, "dispatcher ack pending back to 0", func() bool {
		after = scrape(t, sys)
		v, _ := sample(after, "hookline_consumer_ack_pending_messages", "consumer", "dispatcher")
		s, _ := sample(after, "hookline_deliveries_total", "outcome", "succeeded")
		return v == 0 && s == 2
	})
	if _, ok := sample(after, "hookline_events_rejected_total"); ok {
		t.Errorf("hookline_events_rejected_total has series, want none (nothing was rejected)")
	}
}
