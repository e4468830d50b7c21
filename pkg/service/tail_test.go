package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// tailStream is one client of GET /attempts/stream, read in the background.
type tailStream struct {
	name   string
	resp   *http.Response
	r      *bufio.Reader
	mu     sync.Mutex
	recs   []delivery.Record
	gaps   int64 // attempts skipped, summed over event: gap
	beats  int   // keepalive comments
	marker bool  // the record with event_id "marker" arrived
	err    error
}

// openTail connects with key (admin when empty) and reads the first line, the stream's opening
// comment: from then on the subscription is in place.
func openTail(t *testing.T, sys *servicetest.System, name, key, query string) *tailStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.URL+"/attempts/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key == "" {
		key = servicetest.AdminKey
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s: GET /attempts/stream%s = %d %s", name, query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &tailStream{name: name, resp: resp, r: bufio.NewReaderSize(resp.Body, 512)}
	if line, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("%s: first line %q, %v", name, line, err)
	}
	return s
}

// read parses the stream until it fails or the marker record arrives.
func (s *tailStream) read() {
	var event string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		s.mu.Lock()
		switch {
		case line == ": keepalive":
			s.beats++
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "gap":
			var g struct{ Skipped int64 }
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &g); err != nil || g.Skipped <= 0 {
				s.err = fmt.Errorf("bad gap %q", line)
			}
			s.gaps += g.Skipped
		case strings.HasPrefix(line, "data: ") && event == "attempt":
			var r delivery.Record
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &r); err != nil {
				s.err = fmt.Errorf("bad attempt %q: %v", line, err)
			}
			if r.EventID == "marker" {
				s.marker = true
				s.mu.Unlock()
				return
			}
			s.recs = append(s.recs, r)
		case line == "":
			event = ""
		}
		s.mu.Unlock()
	}
}

func (s *tailStream) snapshot() ([]delivery.Record, int64, int, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery.Record(nil), s.recs...), s.gaps, s.beats, s.marker, s.err
}

// TestLiveTail runs several tails at once against real deliveries of three users: each sees
// exactly the committed attempts its key and filter allow, fields filled, while one tail that
// stopped reading after a burst of 50,000 attempts neither holds up the deliveries nor the
// other tails, and says what it skipped with event: gap.
func TestLiveTail(t *testing.T) {
	sys := servicetest.StartConfig(t, servicetest.NewConfig(t, nil), service.Tuning{TailHeartbeat: 50 * time.Millisecond})
	if r := sys.Do(t, http.MethodPost, "/event_type", map[string]any{"name": "tail.test"}); r.Status != 200 {
		t.Fatalf("create event type: %d %s", r.Status, r.Raw)
	}
	typ := map[string]any{"event_type_id": sys.EventTypeID(t, "tail.test")}
	ok := servicetest.NewReceiver(t)
	flaky := servicetest.NewReceiver(t)
	flaky.Respond = func(n int, _ *http.Request) int {
		if n == 1 {
			return 500 // one retry: an attempt retrying, then one succeeded
		}
		return 200
	}
	a := sys.Register(t, 1, ok.URL, typ)
	b := sys.Register(t, 1, flaky.URL, typ)
	c := sys.Register(t, 2, ok.URL, typ)
	d := sys.Register(t, 3, ok.URL, typ)
	key1, key2, key3 := userKey(t, sys, 1), userKey(t, sys, 2), userKey(t, sys, 3)

	// Refusals before any stream opens.
	for _, tc := range []struct {
		name, key, query string
		status           int
	}{
		{"no key", "-", "", 401},
		{"another user's webhook", key2, "?webhook_id=" + a.ID, 404},
		{"unknown webhook", "", "?webhook_id=" + uuid.NewString(), 404},
		{"not a uuid", key1, "?webhook_id=nope", 422},
	} {
		h := []string{"Authorization", "Bearer " + tc.key}
		if tc.key == "-" {
			h[1] = ""
		} else if tc.key == "" {
			h = nil
		}
		if r := sys.Do(t, http.MethodGet, "/attempts/stream"+tc.query, nil, h...); r.Status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.Status, r.Raw, tc.status)
		}
	}

	// The stalled tail: user 3's key, then a burst on its subject it never reads.
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stalled := openTail(t, sys, "stalled", key3, "")
	const burst = 50000
	var buf []byte
	subject := natsx.AppendAttemptSubject(nil, 3, d.ID)
	for i := range burst {
		r := delivery.Record{DeliveryID: uuid.New(), WebhookID: uuid.MustParse(d.ID), EventID: fmt.Sprint("burst-", i),
			EventType: "tail.test", Attempt: 1, Status: delivery.StatusSucceeded, StatusCode: 200}
		buf = delivery.AppendRecord(buf[:0], &r, time.Millisecond, time.Now())
		if err := nc.Publish(string(subject), buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	streams := []*tailStream{
		openTail(t, sys, "admin", "", ""),
		openTail(t, sys, "user 1", key1, ""),
		openTail(t, sys, "user 2", key2, ""),
		openTail(t, sys, "user 1, webhook a", key1, "?webhook_id="+a.ID),
		openTail(t, sys, "admin, webhook c", "", "?webhook_id="+c.ID),
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() { defer wg.Done(); s.read() }()
	}

	const perUser = 5
	for user, key := range map[int64]string{1: key1, 2: key2, 3: key3} {
		for i := range perUser {
			body := fmt.Sprintf(`{"id":"ev-%d-%d","type":"tail.test","user_id":%d,"data":{"n":%d}}`, user, i, user, i)
			if r := sys.Do(t, http.MethodPost, "/events", body, "Authorization", "Bearer "+key); r.Status != 200 {
				t.Fatalf("POST /events: %d %s", r.Status, r.Raw)
			}
		}
	}
	// a: 5, b: 5 + 1 retry, c: 5, d: 5. Every delivery ends while the stalled tail reads nothing.
	const total = 4*perUser + 1
	servicetest.Eventually(t, 30*time.Second, "every attempt recorded", func() bool {
		return sys.Count(t, `SELECT count(*) FROM delivery_attempts`) == total &&
			sys.Count(t, `SELECT count(*) FROM delivery_states WHERE status <> 'succeeded'`) == 0
	})
	admin := streams[0]
	servicetest.Eventually(t, 30*time.Second, "the admin tail to show every attempt", func() bool {
		recs, _, _, _, err := admin.snapshot()
		return len(recs) >= total || err != nil
	})
	// Everything the dispatcher published is routed; a marker after it on each webhook's
	// subject ends each tail's reading, so what a tail has then is all it will get.
	for user, hook := range map[int64]string{1: a.ID, 2: c.ID} {
		r := delivery.Record{DeliveryID: uuid.New(), WebhookID: uuid.MustParse(hook), EventID: "marker"}
		buf = delivery.AppendRecord(buf[:0], &r, 0, time.Now())
		if err := nc.Publish(string(natsx.AppendAttemptSubject(nil, user, hook)), buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	hooks := map[string]string{a.ID: "a", b.ID: "b", c.ID: "c", d.ID: "d"}
	want := map[string]map[string]int{
		"admin":             {"a": perUser, "b": perUser + 1, "c": perUser, "d": perUser},
		"user 1":            {"a": perUser, "b": perUser + 1},
		"user 2":            {"c": perUser},
		"user 1, webhook a": {"a": perUser},
		"admin, webhook c":  {"c": perUser},
	}
	for _, s := range streams {
		recs, gaps, beats, marker, err := s.snapshot()
		if err != nil || !marker || gaps != 0 {
			t.Errorf("%s: err %v, marker %v, skipped %d", s.name, err, marker, gaps)
		}
		if beats == 0 {
			t.Errorf("%s: no keepalive comment", s.name)
		}
		got := map[string]int{}
		statuses := map[delivery.Status]int{}
		for _, r := range recs {
			got[hooks[r.WebhookID.String()]]++
			statuses[r.Status]++
			if r.DeliveryID == uuid.Nil || r.EventType != "tail.test" || !strings.HasPrefix(r.EventID, "ev-") ||
				r.Attempt < 1 || r.At == "" || r.LatencyMS <= 0 {
				t.Errorf("%s: incomplete record %+v", s.name, r)
			}
			if r.Status == delivery.StatusRetrying && (r.StatusCode != 500 || r.Attempt != 1) {
				t.Errorf("%s: retrying record %+v, want attempt 1 answered 500", s.name, r)
			}
			if r.Status == delivery.StatusSucceeded && r.StatusCode != 200 {
				t.Errorf("%s: succeeded record %+v, want 200", s.name, r)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[s.name]) {
			t.Errorf("%s: attempts per webhook %v, want %v", s.name, got, want[s.name])
		}
		if want[s.name]["b"] > 0 && statuses[delivery.StatusRetrying] != 1 {
			t.Errorf("%s: statuses %v, want one retrying", s.name, statuses)
		}
	}

	// The stalled tail reads again: the burst, d's five real attempts and a marker arrive, or
	// are counted as skipped, and some were skipped.
	r := delivery.Record{DeliveryID: uuid.New(), WebhookID: uuid.MustParse(d.ID), EventID: "marker"}
	buf = delivery.AppendRecord(buf[:0], &r, 0, time.Now())
	done := make(chan struct{})
	go func() { defer close(done); stalled.read() }()
	// The marker may be skipped too while the buffer drains: publish it until it is read.
	for waiting := true; waiting; {
		if err := nc.Publish(string(subject), buf); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			waiting = false
		case <-time.After(100 * time.Millisecond):
		}
	}
	recs, gaps, _, marker, err := stalled.snapshot()
	if err != nil || !marker {
		t.Fatalf("stalled: err %v, marker %v", err, marker)
	}
	if gaps == 0 || int64(len(recs))+gaps < burst+perUser {
		t.Fatalf("stalled: %d attempts read and %d skipped, want some skipped and %d in all", len(recs), gaps, burst+perUser)
	}
	for _, r := range recs {
		if r.WebhookID.String() != d.ID {
			t.Fatalf("stalled (user 3): got %+v", r)
		}
	}
	t.Logf("stalled tail: %d attempts read, %d skipped", len(recs), gaps)
}
