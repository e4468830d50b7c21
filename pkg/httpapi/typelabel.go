package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/store"
)

// otherType is the type label of an event whose type is not registered: POST /events
// publishes such an event (the processor rejects it, reason unknown_type), and a label per
// name a client makes up would grow the series without bound.
const otherType = "other"

// knownTypes holds the names of the registered event types, read at most once per
// knownTypesTTL, for the type label of hookline_events_published_total: a registered name is
// its own label, anything else is "other". A type created on any replica gets its label
// within the TTL (until then its events count as "other").
type knownTypes struct {
	mu      sync.Mutex
	names   map[string]bool
	loaded  time.Time
	loading bool
}

const knownTypesTTL = 5 * time.Second

// typeLabel returns the published-events label of the type named name.
func (a *API) typeLabel(ctx context.Context, name string) string {
	k := &a.types
	k.mu.Lock()
	stale := time.Since(k.loaded) >= knownTypesTTL && !k.loading
	if stale {
		k.loading = true // one caller reads; the others label by the set they have
	}
	k.mu.Unlock()
	if stale {
		// Bounded: a label is not worth holding up the request (PostgreSQL away without an
		// error would hold it for the whole request deadline).
		lctx, cancel := context.WithTimeout(ctx, staleLookup)
		names, err := store.EventTypeNames(lctx, a.db)
		cancel()
		k.mu.Lock()
		k.loading = false
		if err == nil { // PostgreSQL away: keep the set, retry after the TTL
			k.names = make(map[string]bool, len(names))
			for _, n := range names {
				k.names[n] = true
			}
		}
		k.loaded = time.Now()
		k.mu.Unlock()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.names[name] {
		return name
	}
	return otherType
}
