package delivery

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Schedule is a retry schedule: entry i is the wait before attempt i+1,
// counted from the end of the previous attempt, so entry 0 is the wait
// before the first attempt and the length is the number of attempts.
type Schedule []time.Duration

// DefaultSchedule makes 8 attempts: immediately, then after 5s, 5m, 30m,
// 2h, 5h, 10h and 10h (about 28 hours in all, before jitter).
var DefaultSchedule = Schedule{
	0,
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// MaxAttempts bounds the length of a parsed schedule.
const MaxAttempts = 100

// jitter is the spread of Next around a scheduled wait: ±10%, so retries
// of deliveries that failed together do not hit the endpoint together.
const jitter = 0.10

// ParseSchedule parses comma-separated Go durations, such as "0s,5s,5m";
// spaces around entries are allowed. The error has no prefix, so config
// can name the variable in front: an unparsable entry gives time's own
// error (`time: invalid duration "soon"`); an empty string or entry, a
// negative duration, or more than 100 entries give a short phrase.
func ParseSchedule(s string) (Schedule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty schedule: want comma-separated durations such as 0s,5s,5m")
	}
	n := strings.Count(s, ",") + 1
	if n > MaxAttempts {
		return nil, fmt.Errorf("%d entries, at most %d attempts are allowed", n, MaxAttempts)
	}
	sched := make(Schedule, 0, n)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("entry %d is empty", len(sched)+1)
		}
		d, err := time.ParseDuration(entry)
		if err != nil {
			return nil, err // `time: invalid duration "soon"`, the text config shows
		}
		if d < 0 {
			return nil, fmt.Errorf("entry %d: negative duration %q", len(sched)+1, entry)
		}
		sched = append(sched, d)
	}
	return sched, nil
}

// String returns the schedule as ParseSchedule reads it, such as
// "0s,5s,5m0s". An empty schedule gives "", which ParseSchedule refuses.
func (s Schedule) String() string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// Attempts returns the number of attempts the schedule allows.
func (s Schedule) Attempts() int { return len(s) }

// Next returns the wait after attempt n (1-based) has ended, before
// attempt n+1, with ±10% uniform jitter: rnd returns a number in [0, 1),
// 0 giving -10% and 1 giving +10%; nil means math/rand/v2's Float64.
// A zero wait stays zero. n = 0 gives the wait before the first attempt.
//
// ok is false when n >= Attempts() (no attempts left) or n < 0.
func (s Schedule) Next(n int, rnd func() float64) (wait time.Duration, ok bool) {
	if n < 0 || n >= len(s) {
		return 0, false
	}
	return jittered(s[n], rnd), true
}

// jittered spreads d uniformly over [0.9d, 1.1d).
func jittered(d time.Duration, rnd func() float64) time.Duration {
	if d <= 0 {
		return d
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	r := min(max(rnd(), 0), 1) // a bad source never widens the spread
	f := float64(d) * (1 - jitter + 2*jitter*r)
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}

// Backoff returns the wait after attempt n (1-based) ended with HTTP status
// code status (0 for a network error) and Retry-After header value
// retryAfter ("" if absent). It is Next's jittered wait, except that for a
// 429 or 503 a valid Retry-After longer than that replaces it, capped at
// maxWait (HOOKLINE_RETRY_AFTER_MAX; maxWait <= 0 ignores Retry-After). now is the time the response came.
//
// ok is false when no attempts are left: a Retry-After never adds attempts.
func (s Schedule) Backoff(n int, status int, retryAfter string, maxWait time.Duration, now time.Time, rnd func() float64) (time.Duration, bool) {
	wait, ok := s.Next(n, rnd)
	if !ok {
		return 0, false
	}
	if status == 429 || status == 503 {
		if ra, ok := RetryAfter(retryAfter, now); ok {
			// The cap keeps a receiver from parking a delivery for a year.
			wait = max(wait, min(ra, maxWait))
		}
	}
	return wait, true
}
