package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/hookline/hookline/pkg/delivery"
)

// EventRef is what fan-out needs to know of one event.
type EventRef struct {
	UserID    int64
	Type      string
	WebhookID *uuid.UUID
}

// Subscription is one webhook that receives an event, with its custom payload (JSON).
type Subscription struct {
	WebhookID     uuid.UUID
	CustomPayload []byte
}

// Resolution says, for one event, whether it can be accepted and who receives it.
type Resolution struct {
	UnknownType bool
	UnknownUser bool // the user has no webhook registration at all
	Targets     []Subscription
}

// Resolve looks up, for a batch of events in two queries, the webhooks that receive each: the
// event's own webhook_id, or every enabled, live webhook of its user subscribed to its type.
func Resolve(ctx context.Context, db Querier, refs []EventRef) ([]Resolution, error) {
	out := make([]Resolution, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	idx := make([]int64, len(refs))
	users := make([]int64, len(refs))
	types := make([]string, len(refs))
	hooks := make([]*string, len(refs))
	for i, r := range refs {
		idx[i], users[i], types[i] = int64(i), r.UserID, r.Type
		if r.WebhookID != nil {
			s := r.WebhookID.String()
			hooks[i] = &s
		}
	}
	rows, err := db.QueryContext(ctx, `
		SELECT e.i,
		       NOT EXISTS (SELECT 1 FROM event_types t WHERE t.name = e.type),
		       NOT EXISTS (SELECT 1 FROM webhook_registrations w WHERE w.user_id = e.user_id AND w.deleted_at IS NULL)
		FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS e(i, user_id, type)`,
		idx, users, types)
	if err != nil {
		return nil, fmt.Errorf("check event types and users: %w", err)
	}
	for rows.Next() {
		var i int64
		var r Resolution
		if err := rows.Scan(&i, &r.UnknownType, &r.UnknownUser); err != nil {
			rows.Close()
			return nil, err
		}
		out[i].UnknownType, out[i].UnknownUser = r.UnknownType, r.UnknownUser
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = db.QueryContext(ctx, `
		SELECT e.i, w.id, c.custom_payload
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::uuid[]) AS e(i, user_id, type, webhook_id)
		JOIN event_types t ON t.name = e.type
		JOIN webhook_configurations c ON c.event_type_id = t.id
		JOIN webhook_registrations w ON w.id = c.webhook_id
		WHERE w.user_id = e.user_id AND w.deleted_at IS NULL AND w.enabled
		  AND (e.webhook_id IS NULL OR w.id = e.webhook_id)
		ORDER BY e.i, w.id`,
		idx, users, types, hooks)
	if err != nil {
		return nil, fmt.Errorf("resolve subscriptions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			i int64
			s Subscription
		)
		if err := rows.Scan(&i, &s.WebhookID, &s.CustomPayload); err != nil {
			return nil, err
		}
		out[i].Targets = append(out[i].Targets, s)
	}
	return out, rows.Err()
}

// AcceptedEvent is one event to keep, with the file it announces (if any) and its deliveries.
type AcceptedEvent struct {
	ID         string
	Type       string
	UserID     int64
	WebhookID  *uuid.UUID
	OccurredAt time.Time
	Data       []byte
	File       *File
	Deliveries []NewDelivery
}

// File is the metadata of one upload.
type File struct {
	ID          uuid.UUID
	WebhookID   uuid.UUID
	UserID      int64
	FileName    string
	ObjectName  string
	Size        int64
	ContentType string
	SHA256      string
	UploadedAt  time.Time
}

// NewDelivery is one (event, webhook) pair with its rendered body.
type NewDelivery struct {
	ID        uuid.UUID
	WebhookID uuid.UUID
	Payload   []byte
}

// Rejection is an event that could not be accepted, kept for an operator.
type Rejection struct {
	EventID   string
	Subject   string
	Reason    string
	Payload   string
	StreamSeq uint64
}

// SaveEvents writes a batch in one transaction: events, files and deliveries (each ignoring a
// row that exists, so a redelivered event creates nothing twice) and rejections. It returns the
// deliveries of these events that still wait for their first attempt: the new ones, and those
// of a redelivered event whose publish may not have happened. With firstWait > 0 (the retry
// schedule's entry 0) new deliveries are scheduled that long ahead instead, and none returned.
func SaveEvents(ctx context.Context, db *DB, accepted []AcceptedEvent, rejected []Rejection, firstWait time.Duration) ([]delivery.Due, error) {
	var queued []delivery.Due
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		if err := insertEvents(ctx, tx, accepted); err != nil {
			return err
		}
		if err := insertFiles(ctx, tx, accepted); err != nil {
			return err
		}
		if err := insertDeliveries(ctx, tx, accepted, firstWait); err != nil {
			return err
		}
		if err := insertRejections(ctx, tx, rejected); err != nil {
			return err
		}
		var err error
		queued, err = firstAttempts(ctx, tx, accepted)
		return err
	})
	return queued, err
}

func insertEvents(ctx context.Context, tx Querier, evs []AcceptedEvent) error {
	if len(evs) == 0 {
		return nil
	}
	var (
		ids, types, data []string
		users            []int64
		hooks            []*string
		occurred         []time.Time
	)
	for _, e := range evs {
		ids, types, data = append(ids, e.ID), append(types, e.Type), append(data, string(e.Data))
		users, occurred = append(users, e.UserID), append(occurred, e.OccurredAt)
		var h *string
		if e.WebhookID != nil {
			s := e.WebhookID.String()
			h = &s
		}
		hooks = append(hooks, h)
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO events (id, type, user_id, webhook_id, occurred_at, data)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::timestamptz[], $6::jsonb[])
		ON CONFLICT (id) DO NOTHING`,
		ids, types, users, hooks, occurred, data)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

func insertFiles(ctx context.Context, tx Querier, evs []AcceptedEvent) error {
	var (
		ids, hooks, events, names, objects, ctypes, sums []string
		users, sizes                                     []int64
		uploaded                                         []time.Time
	)
	for _, e := range evs {
		f := e.File
		if f == nil {
			continue
		}
		ids, hooks, events = append(ids, f.ID.String()), append(hooks, f.WebhookID.String()), append(events, e.ID)
		names, objects, ctypes, sums = append(names, f.FileName), append(objects, f.ObjectName), append(ctypes, f.ContentType), append(sums, f.SHA256)
		users, sizes, uploaded = append(users, f.UserID), append(sizes, f.Size), append(uploaded, f.UploadedAt)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO files (id, webhook_id, event_id, file_name, object_name, content_type, sha256, user_id, size, uploaded_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		                     $8::bigint[], $9::bigint[], $10::timestamptz[])
		ON CONFLICT DO NOTHING`,
		ids, hooks, events, names, objects, ctypes, sums, users, sizes, uploaded)
	if err != nil {
		return fmt.Errorf("insert files: %w", err)
	}
	return nil
}

func insertDeliveries(ctx context.Context, tx Querier, evs []AcceptedEvent, firstWait time.Duration) error {
	var (
		ids, events, hooks, types []string
		users                     []int64
		payloads                  [][]byte
		occurred                  []time.Time
	)
	for _, e := range evs {
		for _, d := range e.Deliveries {
			ids, events, hooks, types = append(ids, d.ID.String()), append(events, e.ID), append(hooks, d.WebhookID.String()), append(types, e.Type)
			users, payloads, occurred = append(users, e.UserID), append(payloads, d.Payload), append(occurred, e.OccurredAt)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	status, next := "pending", (*time.Time)(nil)
	if firstWait > 0 {
		at := time.Now().Add(firstWait)
		status, next = "retrying", &at
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload, occurred_at, status, next_attempt_at)
		SELECT *, $8, $9::timestamptz FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bigint[], $6::bytea[], $7::timestamptz[])
		ON CONFLICT DO NOTHING`,
		ids, events, hooks, types, users, payloads, occurred, status, next)
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	return nil
}

func insertRejections(ctx context.Context, tx Querier, rej []Rejection) error {
	if len(rej) == 0 {
		return nil
	}
	var (
		ids, subjects, reasons, payloads []string
		seqs                             []int64
	)
	for _, r := range rej {
		ids, subjects, reasons, payloads = append(ids, r.EventID), append(subjects, r.Subject), append(reasons, r.Reason), append(payloads, r.Payload)
		seqs = append(seqs, int64(r.StreamSeq))
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO rejected_events (event_id, subject, reason, payload, stream_seq)
		SELECT NULLIF(i, ''), s, r, p, NULLIF(q, 0) FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS x(i, s, r, p, q)
		ON CONFLICT DO NOTHING`,
		ids, subjects, reasons, payloads, seqs)
	if err != nil {
		return fmt.Errorf("insert rejected events: %w", err)
	}
	return nil
}

func firstAttempts(ctx context.Context, tx Querier, evs []AcceptedEvent) ([]delivery.Due, error) {
	var ids []string
	for _, e := range evs {
		for _, d := range e.Deliveries {
			ids = append(ids, d.ID.String())
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT id, webhook_id, event_type, payload, occurred_at FROM deliveries
		WHERE id = ANY($1::uuid[]) AND status = 'pending' AND attempt_count = 0`, ids)
	if err != nil {
		return nil, fmt.Errorf("select new deliveries: %w", err)
	}
	defer rows.Close()
	var out []delivery.Due
	for rows.Next() {
		q := delivery.Due{Attempt: 1}
		if err := rows.Scan(&q.ID, &q.WebhookID, &q.EventType, &q.Payload, &q.OccurredAt); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}
