package natsx

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var b Backoff
	now := time.Now()
	var waits []time.Duration
	logs := 0
	for i := range 8 {
		w, log, _ := b.Fail(now.Add(time.Duration(i) * time.Second))
		waits = append(waits, w)
		if log {
			logs++
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second, 16 * time.Second, 16 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits = %v, want %v", waits, want)
		}
	}
	if logs != 1 {
		t.Errorf("logged %d of 8 failures within 8 s, want 1", logs)
	}
	if _, log, unlogged := b.Fail(now.Add(20 * time.Second)); !log || unlogged != 7 {
		t.Errorf("Fail 20 s later = log %v, %d unlogged; want a log line counting the 7 quiet ones", log, unlogged)
	}
	b.OK()
	if w, _, _ := b.Fail(now.Add(21 * time.Second)); w != time.Second {
		t.Errorf("wait after OK = %v, want 1s", w)
	}
}
