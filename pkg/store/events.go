package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

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

// Resolve looks up, for a batch of events in one query, the webhooks that receive each: the
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
	// One query: a row per (event, target), or one row with no target.
	rows, err := db.QueryContext(ctx, `
		SELECT e.i,
		       NOT EXISTS (SELECT 1 FROM event_types t WHERE t.name = e.type),
		       NOT EXISTS (SELECT 1 FROM webhook_registrations w WHERE w.user_id = e.user_id AND w.deleted_at IS NULL),
		       s.id, s.custom_payload
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::uuid[]) AS e(i, user_id, type, webhook_id)
		LEFT JOIN LATERAL (
			SELECT w.id, c.custom_payload FROM event_types t
			JOIN webhook_configurations c ON c.event_type_id = t.id
			JOIN webhook_registrations w ON w.id = c.webhook_id
			WHERE t.name = e.type AND w.user_id = e.user_id AND w.deleted_at IS NULL AND w.enabled
			  AND (e.webhook_id IS NULL OR w.id = e.webhook_id)
		) s ON true
		ORDER BY e.i, s.id`,
		idx, users, types, hooks)
	if err != nil {
		return nil, fmt.Errorf("resolve subscriptions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			i       int64
			r       Resolution
			hook    *uuid.UUID
			payload []byte
		)
		if err := rows.Scan(&i, &r.UnknownType, &r.UnknownUser, &hook, &payload); err != nil {
			return nil, err
		}
		out[i].UnknownType, out[i].UnknownUser = r.UnknownType, r.UnknownUser
		if hook != nil {
			out[i].Targets = append(out[i].Targets, Subscription{WebhookID: *hook, CustomPayload: payload})
		}
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

// SaveEvents writes a batch in one statement, so in one round trip and one commit: events,
// files and deliveries (each ignoring a row that exists, so a redelivered event creates
// nothing twice) and rejections. It returns the deliveries of these events that wait for their
// first attempt: the new ones, and those of a redelivered event whose publish may not have
// happened. With firstWait > 0 (the retry schedule's entry 0) new deliveries are scheduled
// that long ahead instead, and only the old ones are returned.
func SaveEvents(ctx context.Context, db Querier, accepted []AcceptedEvent, rejected []Rejection, firstWait time.Duration) ([]delivery.Due, error) {
	var (
		evIDs, evTypes, evData                        []string
		evUsers                                       []int64
		evHooks                                       []*string
		evAt                                          []time.Time
		fIDs, fHooks, fEvents, fNames, fCTypes, fSums []string
		fUsers, fSizes                                []int64
		fAt                                           []time.Time
		dIDs, dEvents, dHooks, dTypes                 []string
		dUsers                                        []int64
		dPayloads                                     [][]byte
		dAt                                           []time.Time
		rIDs, rSubjects, rReasons, rPayloads          []string
		rSeqs                                         []int64
	)
	byID := map[uuid.UUID]delivery.Due{}
	for _, e := range accepted {
		evIDs, evTypes, evData = append(evIDs, e.ID), append(evTypes, e.Type), append(evData, string(e.Data))
		evUsers, evAt, evHooks = append(evUsers, e.UserID), append(evAt, e.OccurredAt), append(evHooks, uuidPtr(e.WebhookID))
		if f := e.File; f != nil {
			fIDs, fHooks, fEvents = append(fIDs, f.ID.String()), append(fHooks, f.WebhookID.String()), append(fEvents, e.ID)
			fNames, fCTypes, fSums = append(fNames, f.FileName), append(fCTypes, f.ContentType), append(fSums, f.SHA256)
			fUsers, fSizes, fAt = append(fUsers, f.UserID), append(fSizes, f.Size), append(fAt, f.UploadedAt)
		}
		for _, d := range e.Deliveries {
			dIDs, dEvents, dHooks, dTypes = append(dIDs, d.ID.String()), append(dEvents, e.ID), append(dHooks, d.WebhookID.String()), append(dTypes, e.Type)
			dUsers, dPayloads, dAt = append(dUsers, e.UserID), append(dPayloads, d.Payload), append(dAt, e.OccurredAt)
			byID[d.ID] = delivery.Due{ID: d.ID, WebhookID: d.WebhookID, EventType: e.Type, Attempt: 1, Payload: d.Payload, OccurredAt: e.OccurredAt}
		}
	}
	for _, r := range rejected {
		rIDs, rSubjects, rReasons, rPayloads = append(rIDs, r.EventID), append(rSubjects, r.Subject), append(rReasons, r.Reason), append(rPayloads, r.Payload)
		rSeqs = append(rSeqs, int64(r.StreamSeq))
	}
	status, next := "pending", (*time.Time)(nil)
	if firstWait > 0 {
		at := time.Now().Add(firstWait)
		status, next = "retrying", &at
	}
	rows, err := db.QueryContext(ctx, saveEventsSQL,
		evIDs, evTypes, evUsers, evHooks, evAt, evData,
		fIDs, fHooks, fEvents, fNames, fCTypes, fSums, fUsers, fSizes, fAt,
		dIDs, dEvents, dHooks, dTypes, dUsers, dPayloads, dAt, status, next,
		rIDs, rSubjects, rReasons, rPayloads, rSeqs)
	if err != nil {
		return nil, fmt.Errorf("save events: %w", err)
	}
	defer rows.Close()
	var queued []delivery.Due
	for rows.Next() {
		var (
			id  uuid.UUID
			old bool
		)
		if err := rows.Scan(&id, &old); err != nil {
			return nil, err
		}
		if old || firstWait <= 0 {
			queued = append(queued, byID[id])
		}
	}
	return queued, rows.Err()
}

// saveEventsSQL is SaveEvents' statement. The final SELECT reads the snapshot from before the
// inserts, so it finds only deliveries that existed already: those of a redelivered event.
const saveEventsSQL = `
WITH ev AS (
	INSERT INTO events (id, type, user_id, webhook_id, occurred_at, data)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::timestamptz[], $6::jsonb[])
	ON CONFLICT (id) DO NOTHING
), fi AS (
	INSERT INTO files (id, webhook_id, event_id, file_name, content_type, sha256, user_id, size, uploaded_at, object_name)
	SELECT f.*, f.id::text FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[],
	                                   $13::bigint[], $14::bigint[], $15::timestamptz[])
	     AS f(id, webhook_id, event_id, file_name, content_type, sha256, user_id, size, uploaded_at)
	ON CONFLICT DO NOTHING
), de AS (
	INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload, occurred_at, status, next_attempt_at)
	SELECT *, $23, $24::timestamptz FROM unnest($16::uuid[], $17::text[], $18::uuid[], $19::text[], $20::bigint[],
	                                            $21::bytea[], $22::timestamptz[])
	ON CONFLICT DO NOTHING
	RETURNING id
), rj AS (
	INSERT INTO rejected_events (event_id, subject, reason, payload, stream_seq)
	SELECT NULLIF(i, ''), s, r, p, NULLIF(q, 0) FROM unnest($25::text[], $26::text[], $27::text[], $28::text[], $29::bigint[]) AS x(i, s, r, p, q)
	ON CONFLICT DO NOTHING
)
SELECT id, false FROM de
UNION ALL
SELECT id, true FROM deliveries WHERE id = ANY($16::uuid[]) AND status = 'pending' AND attempt_count = 0`

func uuidPtr(id *uuid.UUID) *string {
	if id == nil {
		return nil
	}
	s := id.String()
	return &s
}
