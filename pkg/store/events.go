package store

import (
	"context"
	"database/sql"
	"errors"
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
	Filter        []byte // the webhook's payload filter; nil for none
	FIFO          bool   // ordering "fifo": its deliveries carry the event's stream sequence
}

// Resolution says, for one event, whether it can be accepted and who receives it.
type Resolution struct {
	UnknownType bool
	UnknownUser bool // the user has no webhook registration at all
	Targets     []Subscription
	Schema      []byte // the event type's JSON Schema for data; nil for none

}

// Resolve looks up, for a batch of events in one query, the webhooks that receive each: the
// event's own webhook_id, or every enabled, live webhook of its user subscribed to its type.
// It also returns each event type's schema, and the subscription version its answers belong to
// (see SaveEvents); a schema change moves the version.
func Resolve(ctx context.Context, db Querier, refs []EventRef) ([]Resolution, int64, error) {
	out := make([]Resolution, len(refs))
	if len(refs) == 0 {
		return out, 0, nil
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
		SELECT (SELECT version FROM subscription_version), e.i,
		       NOT EXISTS (SELECT 1 FROM event_types t WHERE t.name = e.type),
		       NOT EXISTS (SELECT 1 FROM webhook_registrations w WHERE w.user_id = e.user_id AND w.deleted_at IS NULL),
		       (SELECT t.schema FROM event_types t WHERE t.name = e.type),
		       s.id, s.custom_payload, s.filter, COALESCE(s.fifo, false)
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::uuid[]) AS e(i, user_id, type, webhook_id)
		LEFT JOIN LATERAL (
			SELECT w.id, c.custom_payload, w.filter, w.ordering = 'fifo' AS fifo FROM event_types t
			JOIN webhook_configurations c ON c.event_type_id = t.id
			JOIN webhook_registrations w ON w.id = c.webhook_id
			WHERE t.name = e.type AND w.user_id = e.user_id AND w.deleted_at IS NULL AND w.enabled
			  AND (e.webhook_id IS NULL OR w.id = e.webhook_id)
		) s ON true
		ORDER BY e.i, s.id`,
		idx, users, types, hooks)
	if err != nil {
		return nil, 0, fmt.Errorf("resolve subscriptions: %w", err)
	}
	defer rows.Close()
	var version int64
	for rows.Next() {
		var (
			i       int64
			r       Resolution
			hook    *uuid.UUID
			payload []byte
			filter  []byte
			fifo    bool
		)
		if err := rows.Scan(&version, &i, &r.UnknownType, &r.UnknownUser, &r.Schema, &hook, &payload, &filter, &fifo); err != nil {
			return nil, 0, err
		}
		out[i].UnknownType, out[i].UnknownUser, out[i].Schema = r.UnknownType, r.UnknownUser, r.Schema
		if hook != nil {
			out[i].Targets = append(out[i].Targets, Subscription{WebhookID: *hook, CustomPayload: payload, Filter: filter, FIFO: fifo})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("resolve subscriptions: %w", err)
	}
	return out, version, nil
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
	Seq       uint64 // for a FIFO webhook, the event's EVENTS stream sequence (its order); else 0
}

// Rejection is an event that could not be accepted, kept for an operator with its exact
// bytes. Subject and Reason are cleaned (CleanText) when written.
type Rejection struct {
	EventID   string
	Subject   string
	Reason    string
	Payload   []byte
	StreamSeq uint64
	UserID    int64 // the event's user_id; 0 when the event did not decode
}

// ErrStaleSubscriptions reports that SaveEvents wrote nothing because the subscriptions
// changed after the targets were resolved: resolve again and save again.
var ErrStaleSubscriptions = errors.New("subscriptions changed since they were resolved")

// SaveEvents writes a batch in one statement, so in one round trip and one commit: events,
// files and deliveries (each ignoring a row that exists, so a redelivered event creates
// nothing twice) and rejections. An event is keyed by (id, user_id): two users' events with
// one id are two events. It only appends. It returns the deliveries it created, which
// wait for their first attempt; with firstWait > 0 (the retry schedule's entry 0) they are
// scheduled that long ahead instead, and none is returned. The deliveries of a redelivered
// event already exist and are not returned: see OwedFirstAttempts.
//
// version is the subscription version the targets were resolved at (Resolve), 0 for no check.
// When the subscriptions changed since, nothing is written and the error is
// ErrStaleSubscriptions: a webhook registered before an event was published is never missed
// because its targets came from a cache.
func SaveEvents(ctx context.Context, db Querier, accepted []AcceptedEvent, rejected []Rejection, firstWait time.Duration, version int64) ([]delivery.Due, error) {
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
		dSeqs                                         []*int64
		dPayloads                                     [][]byte
		dAt                                           []time.Time
		rIDs, rSubjects, rReasons                     []string
		rPayloads                                     [][]byte
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
			var seq *int64
			if d.Seq > 0 {
				n := int64(d.Seq)
				seq = &n
			}
			dSeqs = append(dSeqs, seq)
			byID[d.ID] = delivery.Due{ID: d.ID, WebhookID: d.WebhookID, EventType: e.Type, EventID: e.ID, UserID: e.UserID,
				Attempt: 1, Payload: d.Payload, OccurredAt: e.OccurredAt, Seq: int64(d.Seq)}
		}
	}
	var rUsers []int64
	for _, r := range rejected {
		rUsers = append(rUsers, r.UserID)
		rIDs, rSubjects, rReasons = append(rIDs, r.EventID), append(rSubjects, CleanText(r.Subject)), append(rReasons, CleanText(r.Reason))
		rPayloads, rSeqs = append(rPayloads, r.Payload), append(rSeqs, int64(r.StreamSeq))
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
		rIDs, rSubjects, rReasons, rPayloads, rSeqs, version, dSeqs, rUsers)
	if err != nil {
		return nil, fmt.Errorf("save events: %w", err)
	}
	defer rows.Close()
	var queued []delivery.Due
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if id == "" {
			return nil, ErrStaleSubscriptions
		}
		if firstWait <= 0 {
			queued = append(queued, byID[uuid.MustParse(id)])
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("save events: %w", err)
	}
	return queued, nil
}

// saveEventsSQL is SaveEvents' statement: data-modifying CTEs, one snapshot, one commit.
const saveEventsSQL = `
WITH ok AS (
	SELECT $30::bigint = 0 OR version = $30 AS ok FROM subscription_version
), ev AS (
	INSERT INTO events (id, type, user_id, webhook_id, occurred_at, data)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::timestamptz[], $6::jsonb[])
	WHERE (SELECT ok FROM ok)
	ON CONFLICT (id, user_id) DO NOTHING
), fi AS (
	INSERT INTO files (id, webhook_id, event_id, file_name, content_type, sha256, user_id, size, uploaded_at, object_name)
	SELECT f.*, f.id::text FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[],
	                                   $13::bigint[], $14::bigint[], $15::timestamptz[])
	     AS f(id, webhook_id, event_id, file_name, content_type, sha256, user_id, size, uploaded_at)
	WHERE (SELECT ok FROM ok)
	ON CONFLICT DO NOTHING
), rj AS (
	INSERT INTO rejected_events (event_id, subject, reason, payload, stream_seq, user_id)
	SELECT NULLIF(i, ''), s, r, p, NULLIF(q, 0), u
	FROM unnest($25::text[], $26::text[], $27::text[], $28::bytea[], $29::bigint[], $32::bigint[]) AS x(i, s, r, p, q, u)
	WHERE (SELECT ok FROM ok)
	ON CONFLICT DO NOTHING
), de AS (
	INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, payload, occurred_at, seq, status, next_attempt_at)
	SELECT *, $23, $24::timestamptz FROM unnest($16::uuid[], $17::text[], $18::uuid[], $19::text[], $20::bigint[],
	                                            $21::bytea[], $22::timestamptz[], $31::bigint[])
	WHERE (SELECT ok FROM ok)
	ON CONFLICT DO NOTHING
	RETURNING id
)
SELECT id::text FROM de
UNION ALL
SELECT '' FROM ok WHERE NOT ok`

// OwedFirstAttempts returns, among the deliveries ids, those still waiting for their first
// attempt: pending, never claimed, no attempt recorded. The processor publishes them again when
// it handles a redelivered event (its first handling may have committed and then died before
// publishing), with the same Nats-Msg-Id, so a copy inside the duplicate window is dropped.
func OwedFirstAttempts(ctx context.Context, db Querier, ids []uuid.UUID) ([]delivery.Due, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	rows, err := db.QueryContext(ctx, `
		SELECT id, webhook_id, event_type, 1, payload, occurred_at, '', COALESCE(seq, 0), event_id, user_id FROM deliveries d
		WHERE id = ANY($1::uuid[]) AND status = 'pending' AND attempt_count = 0 AND next_attempt_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id)`, strs)
	if err != nil {
		return nil, fmt.Errorf("owed first attempts: %w", err)
	}
	return scanQueued(rows)
}

func uuidPtr(id *uuid.UUID) *string {
	if id == nil {
		return nil
	}
	s := id.String()
	return &s
}

// FileOwners returns the user of each of the files ids that exists (deleted webhooks' files
// included): an upload.completed event may not announce another user's file.
func FileOwners(ctx context.Context, db Querier, ids []uuid.UUID) (map[uuid.UUID]int64, error) {
	owners := make(map[uuid.UUID]int64, len(ids))
	if len(ids) == 0 {
		return owners, nil
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	rows, err := db.QueryContext(ctx, `SELECT id, user_id FROM files WHERE id = ANY($1::uuid[])`, strs)
	if err != nil {
		return nil, fmt.Errorf("file owners: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id   uuid.UUID
			user int64
		)
		if err := rows.Scan(&id, &user); err != nil {
			return nil, fmt.Errorf("file owners: %w", err)
		}
		owners[id] = user
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("file owners: %w", err)
	}
	return owners, nil
}

// WebhookOwner returns the user of a live (not deleted) webhook, or 0 when there is none.
func WebhookOwner(ctx context.Context, db Querier, id uuid.UUID) (int64, error) {
	var user int64
	err := db.QueryRowContext(ctx, `SELECT user_id FROM webhook_registrations WHERE id = $1 AND deleted_at IS NULL`, id).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("owner of webhook %s: %w", id, err)
	}
	return user, nil
}
