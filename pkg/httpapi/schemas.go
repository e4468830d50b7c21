package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
)

// typeSchemas caches each event type's compiled schema for POST /events, so a publish costs
// no query. An entry lives schemaTTL: a schema changed through another replica is enforced by
// this one at most that late (the processor checks every event against the current schema
// regardless, and rejects it with reason "schema"). This replica's own changes forget the
// entry at once. The map is dropped whole past maxTypeSchemas entries.
type typeSchemas struct {
	mu    sync.Mutex
	m     map[string]cachedSchema
	known event.Schemas
}

type cachedSchema struct {
	s  *event.Schema // nil: the type has no schema (or does not exist)
	at time.Time
}

const (
	schemaTTL      = 5 * time.Second
	maxTypeSchemas = 10_000
)

// get returns the schema of the type named name, nil for none.
func (t *typeSchemas) get(ctx context.Context, db store.Querier, name string) (*event.Schema, error) {
	t.mu.Lock()
	c, ok := t.m[name]
	t.mu.Unlock()
	if ok && time.Since(c.at) < schemaTTL {
		return c.s, nil
	}
	lctx := ctx
	if ok {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, staleLookup)
		defer cancel()
	}
	raw, err := store.EventTypeSchema(lctx, db, name)
	if err != nil {
		if ok && store.IsUnavailable(err) {
			// PostgreSQL away: the last known schema keeps POST /events going, for another
			// schemaTTL before the next try.
			t.mu.Lock()
			if t.m != nil {
				t.m[name] = cachedSchema{s: c.s, at: time.Now()}
			}
			t.mu.Unlock()
			return c.s, nil
		}
		return nil, err
	}
	c = cachedSchema{at: time.Now()}
	if raw != nil {
		if c.s, err = t.known.Get(raw); err != nil {
			// Stored schemas compiled when they were stored: this one is left to the
			// processor, which rejects its events with the reason.
			c.s = nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxTypeSchemas {
		t.m = map[string]cachedSchema{}
	}
	t.m[name] = c
	return c.s, nil
}

func (t *typeSchemas) forget(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, name)
}
