// Package processor consumes EVENTS: it decodes and checks each event, resolves the webhooks
// that receive it, writes the event, its file and one delivery row per target in one
// transaction, then publishes one DELIVERIES message per delivery and acks the event. A bad
// event is recorded in rejected_events and terminated, never dropped silently.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Options tune the processor.
type Options struct {
	BatchSize int // most events written in one transaction; 0 = 256
	Workers   int // batches in flight at once; 0 = 4
	// FirstWait is the retry schedule's entry 0: the wait before the first attempt.
	FirstWait time.Duration
	// EventRetention and AttemptRetention bound how long events and attempt rows are kept
	// (0 = forever); PruneEvery is how often the processor deletes older ones (default 1h).
	EventRetention, AttemptRetention, PruneEvery time.Duration
	// RejectedRetention bounds how long rejected_events rows are kept (0 = forever) and
	// RejectedPerUser how many of one user's are kept, the newest (0 = no cap); the same
	// prune pass applies them.
	RejectedRetention time.Duration
	RejectedPerUser   int
	// Reopen re-creates the EVENTS consumer if an operator deletes it (natsx.Reopener); nil:
	// consuming stops for good until a restart.
	Reopen natsx.Reopen
	// Lease, when set, prunes only on the replica holding it (natsx.PruneLease); nil: every
	// replica prunes (harmless, but N times the deletes racing for the same rows).
	Lease *natsx.Lease
}

// Processor is the EVENTS consumer. Any number of processors share the durable consumer.
type Processor struct {
	db   *store.DB
	js   jetstream.JetStream
	m    *metrics.Set
	log  *slog.Logger
	opts Options
	subs *subscriptions
	away natsx.Backoff // PostgreSQL or NATS failures
	// schemas holds the event types' schemas compiled, by document: the subscription cache
	// carries each type's document, and moves on when one changes.
	schemas *event.Schemas
	// filters holds the webhooks' payload filters parsed, by document.
	filters *event.Filters
}

// New builds a processor.
func New(db *store.DB, js jetstream.JetStream, m *metrics.Set, log *slog.Logger, o Options) *Processor {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	return &Processor{db: db, js: js, m: m, log: log.With("component", "processor"), opts: o, subs: newSubscriptions(), schemas: &event.Schemas{}, filters: &event.Filters{}}
}

// deliveryNamespace makes delivery ids deterministic: one (event, webhook) pair is one
// delivery however often its event is redelivered.
var deliveryNamespace = uuid.MustParse("5b0e3c1e-6a43-4f7b-9d0c-1f6f4c2d8a11")

// DeliveryID is the id of the delivery of event eventID to webhook webhookID.
func DeliveryID(eventID string, webhookID uuid.UUID) uuid.UUID {
	return uuid.NewSHA1(deliveryNamespace, []byte(eventID+"/"+webhookID.String()))
}

// Run consumes until ctx ends, then stops pulling, finishes the batch in hand and returns nil.
func (p *Processor) Run(ctx context.Context) error {
	cons, err := natsx.OpenConsumer(ctx, p.js, natsx.EventsStream, natsx.ProcessorConsumer, p.log)
	if err != nil {
		return err
	}
	p.m.WatchConsumer(natsx.ProcessorConsumer, natsx.ConsumerCounts(cons))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if p.opts.Lease == nil || p.opts.EventRetention <= 0 && p.opts.AttemptRetention <= 0 &&
			p.opts.RejectedRetention <= 0 && p.opts.RejectedPerUser <= 0 {
			p.prune(ctx) // nothing to prune: no lease to hold either
			return
		}
		p.opts.Lease.Run(ctx, p.prune)
	}()
	defer wg.Wait()
	return natsx.ConsumeBatches(ctx, cons, p.opts.Reopen, p.opts.BatchSize, p.opts.Workers, p.log, p.handle)
}

// prune applies the retention settings every PruneEvery, in chunks, until ctx ends.
func (p *Processor) prune(ctx context.Context) {
	if p.opts.EventRetention <= 0 && p.opts.AttemptRetention <= 0 && p.opts.RejectedRetention <= 0 && p.opts.RejectedPerUser <= 0 {
		return
	}
	every := p.opts.PruneEvery
	if every <= 0 {
		every = time.Hour
	}
	forever := time.Time{} // a cut-off before every row: keeps them all
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.m.TaskRuns.WithLabelValues("prune").Inc()
		now := time.Now()
		events, attempts := forever, forever
		if p.opts.EventRetention > 0 {
			events = now.Add(-p.opts.EventRetention)
		}
		if p.opts.AttemptRetention > 0 {
			attempts = now.Add(-p.opts.AttemptRetention)
		}
		for ctx.Err() == nil {
			n, err := store.Prune(ctx, p.db, events, attempts, 5000)
			if err != nil {
				p.log.Warn("prune", "err", err)
				break
			}
			if n > 0 {
				p.log.Info("pruned rows past retention", "rows", n)
			}
			if n < 5000 {
				break
			}
		}
		p.pruneRejected(ctx, now)
	}
}

// pruneRejected applies RejectedRetention and RejectedPerUser to rejected_events, in chunks.
func (p *Processor) pruneRejected(ctx context.Context, now time.Time) {
	var before time.Time // zero: rows of any age are kept
	if p.opts.RejectedRetention > 0 {
		before = now.Add(-p.opts.RejectedRetention)
	}
	if before.IsZero() && p.opts.RejectedPerUser <= 0 {
		return
	}
	for ctx.Err() == nil {
		n, err := store.PruneRejected(ctx, p.db, before, p.opts.RejectedPerUser, 5000)
		if err != nil {
			p.log.Warn("prune rejected events", "err", err)
			return
		}
		if n > 0 {
			p.log.Info("pruned rejected events past retention or their user's cap", "rows", n)
		}
		if n < 5000 {
			return
		}
	}
}

// handle processes one batch. It acks or terminates every message once the batch is durable
// in PostgreSQL and its deliveries are published; on a transient failure it naks them all
// (with a short delay) and the redelivery is harmless. Content never wedges it: a row
// PostgreSQL refuses is found by splitting the batch and its event is rejected ("storage").
func (p *Processor) handle(ctx context.Context, msgs []jetstream.Msg) {
	// Every database and publish call of the batch has a deadline: a PostgreSQL that hangs
	// without an error sends the batch back to JetStream, not into a wait kept alive forever.
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	b := newBatch(msgs, time.Now().UTC())
	var (
		queued []delivery.Due
		err    error
	)
	// Upload events may not announce another user's file: one query, only for a batch that
	// holds upload events with a file (the ingress's uploads), none on the common path.
	if files := b.announcedFiles(); len(files) > 0 {
		if b.fileOwners, err = store.FileOwners(ctx, p.db, files); err != nil {
			p.retryLater(ctx, msgs, err)
			return
		}
	}
	// The targets come from a cache checked inside the save (the subscription version): when
	// a registration changed in between, nothing was written and the batch is resolved again.
	for try := 0; ; try++ {
		queued, err = p.save(ctx, b, try)
		if !errors.Is(err, store.ErrStaleSubscriptions) {
			break
		}
		p.subs.reset() // a split may have written part of the batch: existing() finds those
	}
	if seen := b.existing(queued, p.opts.FirstWait); err == nil && len(seen) > 0 {
		// Some deliveries existed already: their event was handled before (a redelivery,
		// whatever its NumDelivered says: a restarted nats-server may have lost the count) or
		// partly written just now. They may exist unpublished: publish those still owed, with
		// the same Nats-Msg-Id, so a copy inside the duplicate window is dropped.
		var owed []delivery.Due
		if owed, err = store.OwedFirstAttempts(ctx, p.db, seen); err == nil {
			queued = mergeDue(queued, owed)
		}
	}
	if err == nil {
		// Rows first, then publish: a crash in between leaves pending rows that the
		// redelivered event (or the reconciler) publishes again, with the same Nats-Msg-Id.
		err = natsx.PublishDeliveries(ctx, p.js, queued)
	}
	if err != nil {
		p.retryLater(ctx, msgs, err)
		return
	}
	p.away.OK()
	b.settle(p.m)
	if n := len(b.rejected); n > 0 {
		p.log.WarnContext(ctx, "events rejected", "count", n, "first_reason", b.rejected[0].rej.Reason)
	}
	p.log.DebugContext(ctx, "batch processed", "events", len(b.accepted), "deliveries", len(queued))
}

// save resolves the batch's targets (from the cache on the first try) and writes it, split
// around any row PostgreSQL refuses.
func (p *Processor) save(ctx context.Context, b *batch, try int) ([]delivery.Due, error) {
	res, version, err := p.subs.resolve(ctx, p.db, b.refs(), try > 0)
	if err != nil {
		return nil, err
	}
	if try >= 2 {
		version = 0 // subscriptions keep changing: take this fresh answer without the check
	}
	b.classify(res, p.schemas, p.filters)
	var queued []delivery.Due
	write := func(rs []row) error {
		acc, rej := splitRows(rs)
		q, err := store.SaveEvents(ctx, p.db, acc, rej, p.opts.FirstWait, version)
		queued = append(queued, q...)
		return err
	}
	var poisoned []row
	refused := func(r row, err error) {
		p.log.ErrorContext(ctx, "event refused by PostgreSQL, rejected", "event_id", r.eventID(), "err", err)
		poisoned = append(poisoned, b.reject(r.msg, r.eventID(), "storage", store.DataErrorText(err)))
	}
	if err := store.Split(b.rows(), write, refused); err != nil {
		return nil, err
	}
	if len(poisoned) > 0 {
		version = 0 // the rejections no longer depend on the subscriptions
		err := store.Split(poisoned, write, func(r row, err error) {
			// A rejection row is bytes and cleaned text: this is a bug, not the event's fault.
			p.log.ErrorContext(ctx, "rejection not recorded", "subject", r.msg.Subject(), "err", err)
		})
		if err != nil {
			return nil, err
		}
	}
	return queued, nil
}

// batchTimeout bounds the handling of one batch.
const batchTimeout = 15 * time.Second

// retryLater hands the batch back to JetStream because PostgreSQL or NATS did not answer:
// redelivered after a wait that grows from 1 s to 16 s while the failures go on (not every
// second), logged at most once per 10 s.
func (p *Processor) retryLater(ctx context.Context, msgs []jetstream.Msg, err error) {
	wait, logNow, unlogged := p.away.Fail(time.Now())
	if logNow {
		p.log.WarnContext(ctx, "batch will be redelivered", "events", len(msgs), "err", err,
			"retry_in", wait.String(), "failures_not_logged", unlogged)
	}
	for _, m := range msgs {
		_ = m.NakWithDelay(wait)
	}
}

// mergeDue appends the deliveries of more that queued lacks.
func mergeDue(queued, more []delivery.Due) []delivery.Due {
	have := make(map[uuid.UUID]bool, len(queued))
	for _, q := range queued {
		have[q.ID] = true
	}
	for _, q := range more {
		if !have[q.ID] {
			queued = append(queued, q)
		}
	}
	return queued
}

// accept renders one body per target and picks up the file an upload event announces.
// seq is the event's EVENTS stream sequence: a FIFO webhook's deliveries are attempted in its
// order.
func accept(e event.Event, targets []store.Subscription, seq uint64) (store.AcceptedEvent, error) {
	a := store.AcceptedEvent{ID: e.ID, Type: e.Type, UserID: e.UserID, WebhookID: e.WebhookID,
		OccurredAt: e.OccurredAt, Data: e.Data}
	for _, t := range targets {
		var custom map[string]any
		if len(t.CustomPayload) > 0 {
			if err := json.Unmarshal(t.CustomPayload, &custom); err != nil {
				return a, err
			}
		}
		body, err := webhook.RenderBody(e.Type, e.OccurredAt, e.Data, custom)
		if err != nil {
			return a, err
		}
		d := store.NewDelivery{ID: DeliveryID(e.ID, t.WebhookID), WebhookID: t.WebhookID, Payload: body}
		if t.FIFO {
			d.Seq = seq
		}
		a.Deliveries = append(a.Deliveries, d)
	}
	if e.Type == event.UploadCompleted {
		f, err := uploadedFile(e)
		if err != nil {
			return a, err
		}
		a.File = f
	}
	return a, nil
}

// uploadedFile reads the file metadata of an upload event; the ingress stores the bytes under
// the file id. An upload.completed published by another service without a file_id announces
// no stored file: nil then.
func uploadedFile(e event.Event) (*store.File, error) {
	var d event.UploadData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, errors.New("upload.completed data: " + err.Error())
	}
	if d.FileID == uuid.Nil {
		return nil, nil
	}
	at, err := time.Parse(time.RFC3339, d.UploadedAt)
	if err != nil {
		at = e.OccurredAt
	}
	return &store.File{ID: d.FileID, WebhookID: d.WebhookID, UserID: e.UserID, FileName: d.FileName,
		ObjectName: d.FileID.String(), Size: d.Size, ContentType: d.ContentType, SHA256: d.SHA256, UploadedAt: at}, nil
}
