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
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
}

// Processor is the EVENTS consumer. Any number of processors share the durable consumer.
type Processor struct {
	db   *store.DB
	js   jetstream.JetStream
	m    *metrics.Set
	log  *slog.Logger
	opts Options
}

// New builds a processor.
func New(db *store.DB, js jetstream.JetStream, m *metrics.Set, log *slog.Logger, o Options) *Processor {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	return &Processor{db: db, js: js, m: m, log: log.With("component", "processor"), opts: o}
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
	cons, err := p.js.Consumer(ctx, natsx.EventsStream, natsx.ProcessorConsumer)
	if err != nil {
		return err
	}
	p.m.WatchConsumer(natsx.ProcessorConsumer, natsx.ConsumerCounts(cons))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.prune(ctx) }()
	defer wg.Wait()
	return natsx.ConsumeBatches(ctx, cons, p.opts.BatchSize, p.opts.Workers, p.log, p.handle)
}

// prune applies the retention settings every PruneEvery, in chunks, until ctx ends.
func (p *Processor) prune(ctx context.Context) {
	if p.opts.EventRetention <= 0 && p.opts.AttemptRetention <= 0 {
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
	}
}

// handle processes one batch. It acks or terminates every message once the batch is durable
// in PostgreSQL and its deliveries are published; on a transient failure it naks them all
// (with a short delay) and the redelivery is harmless.
func (p *Processor) handle(ctx context.Context, msgs []jetstream.Msg) {
	now := time.Now().UTC()
	var (
		decoded  []event.Event
		from     []jetstream.Msg
		rejected []store.Rejection
		termed   []jetstream.Msg
		reasons  []string
	)
	reject := func(m jetstream.Msg, id, reason, detail string) {
		r := store.Rejection{EventID: id, Subject: m.Subject(), Reason: reason, Payload: string(m.Data())}
		if detail != "" {
			r.Reason = reason + ": " + detail
		}
		if md, err := m.Metadata(); err == nil {
			r.StreamSeq = md.Sequence.Stream
		}
		rejected, termed, reasons = append(rejected, r), append(termed, m), append(reasons, reason)
	}
	for _, m := range msgs {
		e, err := event.Decode(m.Subject(), m.Headers().Get(nats.MsgIdHdr), m.Data(), now)
		if err != nil {
			reject(m, "", "malformed", err.Error())
			continue
		}
		decoded, from = append(decoded, e), append(from, m)
	}
	refs := make([]store.EventRef, len(decoded))
	for i, e := range decoded {
		refs[i] = store.EventRef{UserID: e.UserID, Type: e.Type, WebhookID: e.WebhookID}
	}
	res, err := store.Resolve(ctx, p.db, refs)
	if err != nil {
		p.retryLater(ctx, msgs, err)
		return
	}
	var (
		accepted []store.AcceptedEvent
		acked    []jetstream.Msg
	)
	for i, e := range decoded {
		r := res[i]
		switch {
		case r.UnknownType:
			reject(from[i], e.ID, "unknown_type", "no event type named "+strconv.Quote(e.Type))
			continue
		case r.UnknownUser:
			reject(from[i], e.ID, "unknown_user", "user "+strconv.FormatInt(e.UserID, 10)+" has no webhook registration")
			continue
		case e.WebhookID != nil && len(r.Targets) == 0:
			reject(from[i], e.ID, "unknown_webhook", "webhook "+e.WebhookID.String()+" is not an enabled subscriber of this user")
			continue
		}
		a, err := accept(e, r.Targets)
		if err != nil {
			reject(from[i], e.ID, "malformed", err.Error())
			continue
		}
		accepted, acked = append(accepted, a), append(acked, from[i])
	}
	queued, err := store.SaveEvents(ctx, p.db, accepted, rejected, p.opts.FirstWait)
	if err != nil {
		p.retryLater(ctx, msgs, err)
		return
	}
	// Rows first, then publish: a crash in between leaves pending rows that the redelivered
	// event (or the reconciler) publishes again, with the same Nats-Msg-Id.
	if err := natsx.PublishDeliveries(ctx, p.js, queued); err != nil {
		p.retryLater(ctx, msgs, err)
		return
	}
	for _, m := range acked {
		_ = m.Ack() // a lost ack means a redelivery, which creates nothing twice
	}
	for i, m := range termed {
		_ = m.TermWithReason(reasons[i])
		p.m.EventsRejected.WithLabelValues(reasons[i]).Inc()
	}
	for _, a := range accepted {
		p.m.EventsProcessed.WithLabelValues(a.Type).Inc()
	}
	if len(rejected) > 0 {
		p.log.WarnContext(ctx, "events rejected", "count", len(rejected), "first_reason", rejected[0].Reason)
	}
	p.log.DebugContext(ctx, "batch processed", "events", len(accepted), "deliveries", len(queued))
}

func (p *Processor) retryLater(ctx context.Context, msgs []jetstream.Msg, err error) {
	p.log.WarnContext(ctx, "batch will be redelivered", "events", len(msgs), "err", err)
	for _, m := range msgs {
		_ = m.NakWithDelay(time.Second) // a short wait: PostgreSQL or NATS is briefly away
	}
}

// accept renders one body per target and picks up the file an upload event announces.
func accept(e event.Event, targets []store.Subscription) (store.AcceptedEvent, error) {
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
		a.Deliveries = append(a.Deliveries, store.NewDelivery{ID: DeliveryID(e.ID, t.WebhookID), WebhookID: t.WebhookID, Payload: body})
	}
	if e.Type == UploadCompleted {
		f, err := uploadedFile(e)
		if err != nil {
			return a, err
		}
		a.File = f
	}
	return a, nil
}

// UploadCompleted is the event type the ingress publishes for an upload.
const UploadCompleted = "upload.completed"

// UploadData is the data of an upload.completed event, as the ingress publishes it.
type UploadData struct {
	FileID      uuid.UUID `json:"file_id"`
	EventID     string    `json:"event_id"`
	WebhookID   uuid.UUID `json:"webhook_id"`
	FileName    string    `json:"file_name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	UploadedAt  string    `json:"uploaded_at"`
	DownloadURL string    `json:"download_url,omitempty"`
}

// uploadedFile reads the file metadata of an upload event; the ingress stores the bytes under
// the file id. An upload.completed published by another service without a file_id announces
// no stored file: nil then.
func uploadedFile(e event.Event) (*store.File, error) {
	var d UploadData
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
