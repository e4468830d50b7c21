package processor

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
)

// subscriptions caches who receives an event, per (user, type, webhook_id), at one
// subscription version. A batch whose every event is cached costs no resolve round trip; the
// save statement checks the version (store.SaveEvents), so a stale answer is never written.
// The cache is dropped whole when the version moves, after maxAge (also when nothing is
// resolved any more: the next lookup drops it), or past maxEntries keys or maxTargets targets
// (one user with many webhooks makes few keys but long target lists).
type subscriptions struct {
	mu      sync.Mutex
	version int64
	m       map[subKey]store.Resolution
	targets int // targets held in m, all keys together
	since   time.Time
}

type subKey struct {
	user    int64
	typ     string
	webhook uuid.UUID // uuid.Nil: every subscriber
}

const (
	subsMaxAge     = time.Minute
	subsMaxEntries = 100_000
	subsMaxTargets = 1_000_000
)

func newSubscriptions() *subscriptions { return &subscriptions{m: map[subKey]store.Resolution{}} }

func keyOf(r store.EventRef) subKey {
	k := subKey{user: r.UserID, typ: r.Type}
	if r.WebhookID != nil {
		k.webhook = *r.WebhookID
	}
	return k
}

// resolve answers refs from the cache when it can (and fresh is false), else from PostgreSQL,
// and returns the version the answers belong to.
func (s *subscriptions) resolve(ctx context.Context, db store.Querier, refs []store.EventRef, fresh bool) ([]store.Resolution, int64, error) {
	if len(refs) == 0 {
		return nil, 0, nil
	}
	if !fresh {
		if res, version, ok := s.cached(refs); ok {
			return res, version, nil
		}
	}
	res, version, err := store.Resolve(ctx, db, refs)
	if err != nil {
		return nil, 0, err
	}
	s.store(refs, res, version, time.Now())
	return res, version, nil
}

// store caches res (the answers to refs at version), first dropping the cache when it is of
// another version, too old or too big.
func (s *subscriptions) store(refs []store.EventRef, res []store.Resolution, version int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version != s.version || len(s.m) > subsMaxEntries || s.targets > subsMaxTargets || now.Sub(s.since) > subsMaxAge {
		s.m, s.version, s.since, s.targets = map[subKey]store.Resolution{}, version, now, 0
	}
	for i, r := range refs {
		k := keyOf(r)
		s.targets += len(res[i].Targets) - len(s.m[k].Targets)
		s.m[k] = res[i]
	}
}

func (s *subscriptions) cached(refs []store.EventRef) ([]store.Resolution, int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == 0 {
		return nil, 0, false
	}
	if time.Since(s.since) > subsMaxAge {
		s.m, s.version, s.targets = map[subKey]store.Resolution{}, 0, 0 // too old: not kept for nothing
		return nil, 0, false
	}
	res := make([]store.Resolution, len(refs))
	for i, r := range refs {
		v, ok := s.m[keyOf(r)]
		if !ok {
			return nil, 0, false
		}
		res[i] = v
	}
	return res, s.version, true
}

// reset drops the cache: the subscriptions changed.
func (s *subscriptions) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m, s.version, s.targets = map[subKey]store.Resolution{}, 0, 0
}
