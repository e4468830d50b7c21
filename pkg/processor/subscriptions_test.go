package processor

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
)

// The subscription cache is dropped whole past subsMaxTargets targets (few keys with long
// target lists), and when a lookup finds it older than subsMaxAge.
func TestSubscriptionsBounded(t *testing.T) {
	s := newSubscriptions()
	now := time.Now()
	many := store.Resolution{Targets: make([]store.Subscription, subsMaxTargets/4+1)}
	for user := range int64(4) {
		s.store([]store.EventRef{{UserID: user + 1, Type: "t"}}, []store.Resolution{many}, 1, now)
	}
	if len(s.m) != 4 || s.targets != 4*len(many.Targets) {
		t.Fatalf("cache holds %d keys and %d targets, want 4 and %d", len(s.m), s.targets, 4*len(many.Targets))
	}
	s.store([]store.EventRef{{UserID: 9, Type: "t"}}, []store.Resolution{{Targets: make([]store.Subscription, 1)}}, 1, now)
	if len(s.m) != 1 || s.targets != 1 {
		t.Fatalf("past %d targets the cache holds %d keys and %d targets, want it dropped (then 1 and 1)", subsMaxTargets, len(s.m), s.targets)
	}
	// Storing the same key again replaces its count.
	s.store([]store.EventRef{{UserID: 9, Type: "t"}}, []store.Resolution{{Targets: make([]store.Subscription, 3)}}, 1, now)
	if s.targets != 3 {
		t.Fatalf("targets = %d after replacing a key's answer, want 3", s.targets)
	}

	wh := uuid.New()
	s.store([]store.EventRef{{UserID: 9, Type: "t", WebhookID: &wh}}, []store.Resolution{{}}, 2, now.Add(-2*subsMaxAge)) // a new version, resolved long ago
	if _, _, ok := s.cached([]store.EventRef{{UserID: 9, Type: "t", WebhookID: &wh}}); ok {
		t.Fatal("a cache older than subsMaxAge answered")
	}
	if len(s.m) != 0 {
		t.Fatalf("a cache found too old still holds %d keys", len(s.m))
	}
}
