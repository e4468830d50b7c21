package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// target is a webhook ready to send to: a cached, decoded view of its row.
type target struct {
	url     string
	enabled bool
	headers map[string]map[string]string // event type -> custom headers
	signer  *webhook.Signer
	loaded  time.Time
	// The webhook's own settings; 0 means the dispatcher's default (none for the rate).
	rate        float64       // deliveries per second
	concurrency int           // requests in flight
	timeout     time.Duration // one attempt
	fifo        bool          // ordering "fifo": one at a time, in event order
	// failing: the webhook's failing_since is set (or an attempt failed since it was
	// loaded), so a success must go through the path that clears it, not be appended alone.
	failing atomic.Bool
}

// errGone reports a webhook that was deleted (or never existed).
var errGone = errors.New("webhook deleted")

// targetCache keeps each webhook's settings for ttl, so a burst of deliveries to one endpoint
// costs one query, while a PATCH, a disable or a secret rotation takes effect within ttl.
type targetCache struct {
	db     *store.DB
	sealer *webhook.Sealer
	ttl    time.Duration
	group  singleflight.Group

	mu sync.Mutex
	m  map[uuid.UUID]*target
}

func newTargetCache(db *store.DB, sealer *webhook.Sealer, ttl time.Duration) *targetCache {
	return &targetCache{db: db, sealer: sealer, ttl: ttl, m: map[uuid.UUID]*target{}}
}

func (c *targetCache) get(ctx context.Context, id uuid.UUID) (*target, error) {
	c.mu.Lock()
	t, ok := c.m[id]
	c.mu.Unlock()
	if ok && time.Since(t.loaded) < c.ttl {
		return t, nil
	}
	v, err, _ := c.group.Do(id.String(), func() (any, error) {
		return c.load(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*target), nil
}

func (c *targetCache) load(ctx context.Context, id uuid.UUID) (*target, error) {
	row, err := store.LoadTarget(ctx, c.db, id)
	if errors.Is(err, webhook.ErrNotFound) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	if row.Deleted {
		return nil, errGone
	}
	secret, err := c.sealer.Open(row.Secret)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", id, err)
	}
	secrets := []webhook.Secret{secret}
	if row.PreviousSecret != "" && time.Now().Before(row.PreviousSecretUntil) {
		// During a rotation both secrets sign, so receivers can switch at their pace.
		prev, err := c.sealer.Open(row.PreviousSecret)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", id, err)
		}
		secrets = append(secrets, prev)
	}
	signer, err := webhook.NewSigner(secrets...)
	if err != nil {
		return nil, err
	}
	t := &target{url: row.URL, enabled: row.Enabled, headers: row.Headers, signer: signer, loaded: time.Now()}
	if l := row.Limits; l.RateLimit != nil {
		t.rate = float64(*l.RateLimit)
	}
	if l := row.Limits; l.MaxConcurrency != nil {
		t.concurrency = *l.MaxConcurrency
	}
	if l := row.Limits; l.TimeoutMS != nil {
		t.timeout = time.Duration(*l.TimeoutMS) * time.Millisecond
	}
	if row.Limits.Ordering == webhook.OrderingFIFO {
		t.fifo, t.concurrency = true, 1 // strictly one after the other
	}
	t.failing.Store(row.Failing)
	c.mu.Lock()
	c.m[id] = t
	c.mu.Unlock()
	return t, nil
}

// peek returns webhook id's cached settings, however old, without loading them; nil when it
// has none.
func (c *targetCache) peek(id uuid.UUID) *target {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

// markFailing notes that an attempt of webhook id failed, so its next success is recorded
// on the path that clears failing_since even before the cache reloads it.
func (c *targetCache) markFailing(id uuid.UUID) {
	c.mu.Lock()
	t, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		t.failing.Store(true)
	}
}
