package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrNoEvent reports an event id that matches no stored event (or one past retention).
var ErrNoEvent = errors.New("event not found")

// ErrEventAmbiguous reports an event id that several users sent, looked up for no user in
// particular: each user's event with that id is its own event.
var ErrEventAmbiguous = errors.New("several users sent an event with this id")

// StoredEvent is an accepted event as kept in PostgreSQL; GetEvent adds its deliveries.
type StoredEvent struct {
	ID         string
	Type       string
	UserID     int64
	OccurredAt time.Time
	ReceivedAt time.Time
	Data       []byte
	Deliveries []EventDelivery
}

// EventDelivery is one delivery of an event, with its status as delivery_states shows it.
type EventDelivery struct {
	ID        uuid.UUID
	WebhookID uuid.UUID
	Status    string
}

const storedEventColumns = "id, type, user_id, occurred_at, received_at, data"

func scanStoredEvent(row interface{ Scan(...any) error }) (StoredEvent, error) {
	var e StoredEvent
	err := row.Scan(&e.ID, &e.Type, &e.UserID, &e.OccurredAt, &e.ReceivedAt, &e.Data)
	return e, err
}

// GetEvent loads the event id of user userID (0: of whichever user sent it) and its
// deliveries to live webhooks, oldest first. Event ids are per user: ErrNoEvent when that user
// has none, ErrEventAmbiguous when userID is 0 and several users sent that id. Statuses come
// from the view delivery_states: a delivery whose first attempt succeeded is still 'pending' in
// its own row.
func GetEvent(ctx context.Context, db Querier, userID int64, id string) (StoredEvent, error) {
	rows, err := db.QueryContext(ctx, "SELECT "+storedEventColumns+` FROM events
		WHERE id = $1 AND ($2 = 0 OR user_id = $2) ORDER BY user_id LIMIT 2`, id, userID)
	if err != nil {
		return StoredEvent{}, fmt.Errorf("load event %s: %w", id, err)
	}
	var found []StoredEvent
	for rows.Next() {
		e, err := scanStoredEvent(rows)
		if err != nil {
			rows.Close()
			return StoredEvent{}, fmt.Errorf("load event %s: %w", id, err)
		}
		found = append(found, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return StoredEvent{}, fmt.Errorf("load event %s: %w", id, err)
	}
	switch len(found) {
	case 0:
		return StoredEvent{}, ErrNoEvent
	case 2:
		return StoredEvent{}, ErrEventAmbiguous
	}
	e := found[0]
	rows, err = db.QueryContext(ctx, `
		SELECT s.id, s.webhook_id, s.status FROM delivery_states s
		JOIN webhook_registrations w ON w.id = s.webhook_id AND w.deleted_at IS NULL
		WHERE s.event_id = $1 AND s.user_id = $2 ORDER BY s.created_at, s.id`, id, e.UserID)
	if err != nil {
		return e, fmt.Errorf("load deliveries of event %s: %w", id, err)
	}
	defer rows.Close()
	e.Deliveries = []EventDelivery{}
	for rows.Next() {
		var d EventDelivery
		if err := rows.Scan(&d.ID, &d.WebhookID, &d.Status); err != nil {
			return e, err
		}
		e.Deliveries = append(e.Deliveries, d)
	}
	return e, rows.Err()
}

// EventFilter narrows ListEvents: UserID 0 = every user, Type "" = every type, a zero time =
// no bound. Since is inclusive, Until exclusive; both compare with received_at.
type EventFilter struct {
	UserID       int64
	Type         string
	Since, Until time.Time
}

// ListEvents lists stored events newest first (by received_at, then id, then user_id),
// without their deliveries. Every event of one batch has the same received_at and event ids
// are per user, so the cursor carries the user too (its ID is "<id>,<user_id>"; a cursor
// without the user resumes after every user's event with that id, as before).
func ListEvents(ctx context.Context, db Querier, f EventFilter, limit int, after Cursor) (Page[StoredEvent], error) {
	var page Page[StoredEvent]
	afterID, afterUser := after.ID, int64(0)
	if i := strings.LastIndexByte(after.ID, ','); i >= 0 {
		if u, err := strconv.ParseInt(after.ID[i+1:], 10, 64); err == nil && u > 0 {
			afterID, afterUser = after.ID[:i], u
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT `+storedEventColumns+` FROM events
		WHERE ($1 = 0 OR user_id = $1) AND ($2 = '' OR type = $2)
		  AND ($3::timestamptz IS NULL OR received_at >= $3) AND ($4::timestamptz IS NULL OR received_at < $4)
		  AND ($5::timestamptz IS NULL OR (received_at, id, user_id) < ($5, $6, $8))
		ORDER BY received_at DESC, id DESC, user_id DESC LIMIT $7`,
		f.UserID, f.Type, nullTime(f.Since), nullTime(f.Until), nullTime(after.At), afterID, limit+1, afterUser)
	if err != nil {
		return page, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanStoredEvent(rows)
		if err != nil {
			return page, fmt.Errorf("list events: %w", err)
		}
		page.Items = append(page.Items, e)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.Next = &Cursor{At: last.ReceivedAt, ID: last.ID + "," + strconv.FormatInt(last.UserID, 10)}
	}
	return page, rows.Err()
}
