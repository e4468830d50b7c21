package delivery

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSchedule(t *testing.T) {
	hundred := strings.TrimSuffix(strings.Repeat("1ms,", MaxAttempts), ",")
	tests := []struct {
		in      string
		want    Schedule
		wantErr string // the exact error text; "" = valid
	}{
		{"0s,5s,5m,30m,2h,5h,10h,10h", DefaultSchedule, ""},
		{"0", Schedule{0}, ""},
		{" 10ms , 20ms,1h30m ", Schedule{10 * time.Millisecond, 20 * time.Millisecond, 90 * time.Minute}, ""},
		{hundred, nil, ""},
		{"soon", nil, `time: invalid duration "soon"`},
		{"0s, soon ,5s", nil, `time: invalid duration "soon"`},
		{"5", nil, `time: missing unit in duration "5"`},
		{"", nil, "empty schedule: want comma-separated durations such as 0s,5s,5m"},
		{"  ", nil, "empty schedule: want comma-separated durations such as 0s,5s,5m"},
		{"0s,,5s", nil, "entry 2 is empty"},
		{"0s,5s,", nil, "entry 3 is empty"},
		{"1s,-5s", nil, `entry 2: negative duration "-5s"`},
		{hundred + ",1ms", nil, "101 entries, at most 100 attempts are allowed"},
	}
	for _, tt := range tests {
		got, err := ParseSchedule(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseSchedule(%.40q) = %v, %v, want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSchedule(%.40q) = %v, want nil error", tt.in, err)
			continue
		}
		if tt.want != nil {
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSchedule(%.40q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		}
		// String round-trips through ParseSchedule.
		again, err := ParseSchedule(got.String())
		if err != nil || !cmp.Equal(again, got) {
			t.Errorf("ParseSchedule(%q.String() = %q) = %v, %v, want %v", tt.in, got.String(), again, err, got)
		}
	}
}

func TestScheduleString(t *testing.T) {
	if got, want := DefaultSchedule.String(), "0s,5s,5m0s,30m0s,2h0m0s,5h0m0s,10h0m0s,10h0m0s"; got != want {
		t.Errorf("DefaultSchedule.String() = %q, want %q", got, want)
	}
	if got := (Schedule{}).String(); got != "" {
		t.Errorf("Schedule{}.String() = %q, want empty", got)
	}
	if got := DefaultSchedule.Attempts(); got != 8 {
		t.Errorf("DefaultSchedule.Attempts() = %d, want 8", got)
	}
}

// fixed returns a random source that always returns r.
func fixed(r float64) func() float64 { return func() float64 { return r } }

// almostOne is the largest float64 below 1, the top of rand.Float64's range.
var almostOne = math.Nextafter(1, 0)

func TestNext(t *testing.T) {
	s := Schedule{0, 10 * time.Second, time.Hour}
	tests := []struct {
		n      int
		r      float64
		want   time.Duration
		wantOK bool
	}{
		{0, 0.5, 0, true}, // before the first attempt
		{0, 0, 0, true},   // zero stays zero
		{1, 0, 9 * time.Second, true},
		{1, 0.5, 10 * time.Second, true},
		{1, almostOne, 11 * time.Second, true}, // up to rounding
		{2, 0, 54 * time.Minute, true},
		{2, 0.25, 57 * time.Minute, true},
		{3, 0.5, 0, false}, // attempt 3 was the last
		{4, 0.5, 0, false},
		{-1, 0.5, 0, false},
		{1, -3, 9 * time.Second, true}, // a bad source is clamped
		{1, 7, 11 * time.Second, true},
	}
	for _, tt := range tests {
		got, ok := s.Next(tt.n, fixed(tt.r))
		if ok != tt.wantOK || (got-tt.want).Abs() > time.Microsecond {
			t.Errorf("%v.Next(%d, rnd=%v) = %v, %v, want %v, %v", s, tt.n, tt.r, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestNextJitterBounds(t *testing.T) {
	s := Schedule{0, time.Minute}
	lo, hi := 54*time.Second, 66*time.Second
	seenLow, seenHigh := false, false
	for range 10_000 {
		got, ok := s.Next(1, nil) // math/rand/v2
		if !ok || got < lo || got >= hi {
			t.Fatalf("%v.Next(1, nil) = %v, %v, want [%v, %v), true", s, got, ok, lo, hi)
		}
		seenLow = seenLow || got < 55*time.Second
		seenHigh = seenHigh || got > 65*time.Second
	}
	if !seenLow || !seenHigh {
		t.Errorf("%v.Next(1, nil) over 10000 draws: reached low end %v, high end %v, want both", s, seenLow, seenHigh)
	}
	if got, _ := (Schedule{0, math.MaxInt64}).Next(1, fixed(almostOne)); got != math.MaxInt64 {
		t.Errorf("Next(1) of the longest wait = %v, want it saturated at %v", got, time.Duration(math.MaxInt64))
	}
}

func TestBackoff(t *testing.T) {
	s := Schedule{0, 10 * time.Second, time.Minute}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	inTwoHours := now.Add(2 * time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT")
	mid := fixed(0.5) // no jitter, so results are exact
	tests := []struct {
		name       string
		n          int
		status     int
		retryAfter string
		max        time.Duration
		want       time.Duration
		wantOK     bool
	}{
		{"network error", 1, 0, "", time.Hour, 10 * time.Second, true},
		{"500 ignores Retry-After", 1, 500, "120", time.Hour, 10 * time.Second, true},
		{"429 longer Retry-After", 1, 429, "120", time.Hour, 2 * time.Minute, true},
		{"503 longer Retry-After", 2, 503, "300", time.Hour, 5 * time.Minute, true},
		{"429 shorter Retry-After", 2, 429, "5", time.Hour, time.Minute, true},
		{"429 no Retry-After", 1, 429, "", time.Hour, 10 * time.Second, true},
		{"429 bad Retry-After", 1, 429, "later", time.Hour, 10 * time.Second, true},
		{"429 Retry-After capped", 1, 429, "86400", time.Hour, time.Hour, true},
		{"429 cap below schedule", 2, 429, "86400", 30 * time.Second, time.Minute, true},
		{"429 zero max ignores Retry-After", 1, 429, "120", 0, 10 * time.Second, true},
		{"503 HTTP date", 1, 503, inTwoHours, 24 * time.Hour, 2 * time.Hour, true},
		{"503 HTTP date capped", 1, 503, inTwoHours, 90 * time.Minute, 90 * time.Minute, true},
		{"no attempts left", 3, 0, "", time.Hour, 0, false},
		{"Retry-After adds no attempt", 3, 429, "60", time.Hour, 0, false},
	}
	for _, tt := range tests {
		got, ok := s.Backoff(tt.n, tt.status, tt.retryAfter, tt.max, now, mid)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: Backoff(%d, %d, %q, %v) = %v, %v, want %v, %v", tt.name, tt.n, tt.status, tt.retryAfter, tt.max, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestBackoffRetryAfterNotJittered(t *testing.T) {
	s := Schedule{0, 10 * time.Second}
	now := time.Unix(1_800_000_000, 0)
	for _, r := range []float64{0, 0.5, almostOne} {
		if got, ok := s.Backoff(1, 429, "60", time.Hour, now, fixed(r)); got != time.Minute || !ok {
			t.Errorf("Backoff(1, 429, \"60\", rnd=%v) = %v, %v, want 1m0s, true", r, got, ok)
		}
	}
}
