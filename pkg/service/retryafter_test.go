package service_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// A receiver's Retry-After is obeyed through the whole dispatcher, in both forms: a 429 with
// "Retry-After: 2" and then a 503 with an HTTP date 3 s ahead each push the next attempt at
// least 2 s out, although the retry schedule says 20 ms. Asserted on the arrival times the
// receiver recorded and on the attempt rows, never on how fast anything went.
func TestRetryAfterThroughDispatcher(t *testing.T) {
	sys := servicetest.Start(t, nil) // schedule 0, 20 ms, 20 ms: three attempts
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		n := len(arrivals)
		mu.Unlock()
		switch n {
		case 1:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			// An HTTP date has whole seconds: 3 s ahead, truncated, is at least 2 s ahead.
			w.Header().Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(rv.Close)
	w := sys.Register(t, 1, rv.URL, nil)
	publishMany(t, natsConn(t, sys), "retry-after", 1, 1, w.ID)
	servicetest.Eventually(t, 30*time.Second, "delivered on the third attempt", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE webhook_id = $1 AND status = 'succeeded' AND attempt_count = 3", w.ID) == 1
	})
	mu.Lock()
	got := append([]time.Time(nil), arrivals...)
	mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for i, what := range []string{"Retry-After: 2 (429)", "Retry-After: <HTTP date 3 s ahead> (503)"} {
		if gap := got[i+1].Sub(got[i]); gap < 2*time.Second {
			t.Errorf("attempt %d came %s after the answer with %s, want at least 2s", i+2, gap.Round(time.Millisecond), what)
		}
	}
	// The attempt rows say the same: each is recorded with its status, the next one at least
	// 2 s later (a row is written at the end of its attempt).
	rows, err := sys.DB.QueryContext(t.Context(), `SELECT a.attempt, a.status_code, a.created_at FROM delivery_attempts a
		JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1 ORDER BY a.attempt`, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var codes []int
	var at []time.Time
	for rows.Next() {
		var n, code int
		var ts time.Time
		if err := rows.Scan(&n, &code, &ts); err != nil {
			t.Fatal(err)
		}
		codes, at = append(codes, code), append(at, ts)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(codes) != 3 || codes[0] != 429 || codes[1] != 503 || codes[2] != 200 {
		t.Fatalf("attempt rows have statuses %v, want [429 503 200]", codes)
	}
	for i := 1; i < 3; i++ {
		if gap := at[i].Sub(at[i-1]); gap < 2*time.Second {
			t.Errorf("attempt row %d recorded %s after row %d, want at least 2s", i+1, gap.Round(time.Millisecond), i)
		}
	}
}
