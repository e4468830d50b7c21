package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeasesBucket is the key-value bucket of leases: one key per job that only one replica runs.
// Its TTL (the bucket's MaxAge) is the lease's: an entry not renewed within it ages out, and
// another replica's Create then succeeds.
const LeasesBucket = "hookline-leases"

// Lease names: the jobs one replica runs for all.
const (
	DispatcherLease = "dispatcher-jobs" // retry scheduler and reconciler
	PruneLease      = "processor-prune" // retention
)

// DefaultLeaseTTL is how long a lease outlives its holder's last renewal: a dead leader's jobs
// pause at most this long (plus one renewal period) before another replica takes them over.
const DefaultLeaseTTL = 10 * time.Second

// SetupLeases creates the leases bucket with the given TTL and replicas, or opens it as it is.
func SetupLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeasesBucket,
		Description: "which replica runs each singleton job; entries age out after the TTL",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, LeasesBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("set up key-value bucket %s: %w", LeasesBucket, err)
	}
	return kv, nil
}

// Lease is one replica's claim on a named lease in the leases bucket. The holder writes its id
// under the lease's key with Create (which succeeds only when the key is absent or deleted)
// and renews it every TTL/3 with Update at the revision it last wrote (compare-and-set), so
// two replicas never both renew. A holder that dies stops renewing; its entry ages out after
// the TTL and a contender's next Create wins. A holder that stops cleanly deletes the key at
// its revision, so a successor takes over at its next try.
//
// A lease keeps load down; it does not make the jobs safe: a holder cut off from NATS acts
// until 2/3 of the TTL after its last renewal, when a successor may already have started
// (clock drift, a slow renewal), so the jobs it guards must stay correct when two run at once
// (Hookline's lock their rows with SKIP LOCKED, or a mark row FOR UPDATE).
type Lease struct {
	kv  jetstream.KeyValue
	key string
	id  string
	ttl time.Duration
	log *slog.Logger
	// Held reports the lease's state to the caller (a gauge); nil = not reported.
	Held func(bool)
}

// NewLease makes a contender for key, identified by id (unique per process), whose bucket
// ages entries out after ttl.
func NewLease(kv jetstream.KeyValue, key, id string, ttl time.Duration, log *slog.Logger) *Lease {
	return &Lease{kv: kv, key: key, id: id, ttl: ttl, log: log.With("lease", key)}
}

// Run contends for the lease until ctx ends. Each time it wins, it calls lead with a context
// that ends when the lease is lost (or ctx ends) and waits for lead to return before it
// contends again. It returns when ctx ends, after deleting the key if it holds it.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context)) {
	// Contenders try often (a Create is one small publish), so a successor starts within
	// TTL/10 of the dead holder's entry ageing out.
	every := max(l.ttl/10, 100*time.Millisecond)
	for {
		rev, ok := l.acquire(ctx)
		if ok {
			l.hold(ctx, rev, lead)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// acquire tries once to take the lease: Create when it is free, or adopt an entry that
// already carries this id (a renewal whose answer was lost, a restart with the same id).
func (l *Lease) acquire(ctx context.Context) (uint64, bool) {
	rev, err := l.kv.Create(ctx, l.key, []byte(l.id))
	if err == nil {
		return rev, true
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		if ctx.Err() == nil {
			l.log.Debug("lease not taken", "err", err)
		}
		return 0, false
	}
	e, err := l.kv.Get(ctx, l.key)
	if err != nil || string(e.Value()) != l.id {
		return 0, false
	}
	rev, err = l.kv.Update(ctx, l.key, []byte(l.id), e.Revision())
	return rev, err == nil
}

// hold runs lead while the lease is renewed, then gives the lease up.
func (l *Lease) hold(ctx context.Context, rev uint64, lead func(context.Context)) {
	l.log.Info("lease taken", "holder", l.id)
	l.report(true)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lead(lctx) }()
	defer func() {
		cancel()
		<-done
		l.report(false)
		// Hand over at once on a clean stop; a holder that lost the lease already has no
		// revision to delete at, and the Delete fails harmlessly.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer dcancel()
		if err := l.kv.Delete(dctx, l.key, jetstream.LastRevision(rev)); err == nil {
			l.log.Info("lease given up", "holder", l.id)
		}
	}()
	// Act only while a successor cannot have started: 2/3 of the TTL after the last renewal.
	deadline := time.NewTimer(l.ttl * 2 / 3)
	defer deadline.Stop()
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-deadline.C:
			l.log.Warn("lease lost: not renewed in time", "holder", l.id)
			return
		case <-tick.C:
		}
		start := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, l.ttl/3)
		next, err := l.kv.Update(rctx, l.key, []byte(l.id), rev)
		rcancel()
		switch {
		case err == nil:
			rev = next
			deadline.Reset(time.Until(start.Add(l.ttl * 2 / 3)))
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			l.log.Warn("lease lost: another replica holds it", "holder", l.id)
			return
		default:
			l.log.Debug("lease not renewed", "err", err) // tried again next tick, until the deadline
		}
	}
}

func (l *Lease) report(held bool) {
	if l.Held != nil {
		l.Held(held)
	}
}
