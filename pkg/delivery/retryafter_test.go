package delivery

import (
	"math"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"007", 7 * time.Second, true},
		{"Sat, 28 Nov 2026 12:01:30 GMT", 90 * time.Second, true},
		{"Saturday, 28-Nov-26 13:00:00 GMT", time.Hour, true}, // RFC 850
		{"Sat Nov 28 12:00:10 2026", 10 * time.Second, true},  // asctime
		{"Sat, 28 Nov 2026 12:00:00 GMT", 0, true},
		{"99999999999999999999", math.MaxInt64, true}, // saturates; callers cap
		{"", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Sat, 28 Nov 2026 11:59:59 GMT", 0, false},   // in the past
		{"2026-11-28T12:01:00Z", 0, false},            // not an HTTP date
		{"Sat, 28 Nov 2026 12:01:30 +0000", 0, false}, // must be GMT
		{"Sat, 28 Nov 2026 12:01:30 GMT trailing", 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
