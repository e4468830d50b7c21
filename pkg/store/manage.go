package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/webhook"
)

// ErrConflict reports a state change that the row's current state does not allow.
var ErrConflict = errors.New("state conflict")

// ErrBadCursor reports a pagination cursor this API did not issue.
var ErrBadCursor = errors.New("bad cursor")

// Cursor marks a position in a newest-first listing: (created_at, id) of the last item.
type Cursor struct {
	At time.Time
	ID string
}

// Encode makes the opaque token clients send back.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.At.UnixMicro(), 10) + "," + c.ID))
}

// ParseCursor reads a token made by Encode; the zero Cursor for "".
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	at, id, ok := strings.Cut(string(raw), ",")
	us, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{At: time.UnixMicro(us), ID: id}, nil
}

// Page is one page of a listing and the cursor of the next, if any.
type Page[T any] struct {
	Items []T
	Next  *Cursor
}

// ListWebhooks lists live webhooks, newest first, of one user (userID > 0) or of all.
func ListWebhooks(ctx context.Context, db Querier, userID int64, limit int, after Cursor) (Page[webhook.Webhook], error) {
	var page Page[webhook.Webhook]
	rows, err := db.QueryContext(ctx, `
		SELECT id, created_at FROM webhook_registrations
		WHERE deleted_at IS NULL AND ($1 = 0 OR user_id = $1)
		  AND ($2::timestamptz IS NULL OR (created_at, id::text) < ($2, $3))
		ORDER BY created_at DESC, id::text DESC LIMIT $4`,
		userID, nullTime(after.At), after.ID, limit+1)
	if err != nil {
		return page, fmt.Errorf("list webhooks: %w", err)
	}
	var ids []uuid.UUID
	var ats []time.Time
	for rows.Next() {
		var (
			id uuid.UUID
			at time.Time
		)
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return page, err
		}
		ids, ats = append(ids, id), append(ats, at)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return page, err
	}
	if len(ids) > limit {
		ids = ids[:limit]
		page.Next = &Cursor{At: ats[limit-1], ID: ids[limit-1].String()}
	}
	for _, id := range ids {
		w, err := GetWebhook(ctx, db, id)
		if errors.Is(err, webhook.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, w)
	}
	return page, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// WebhookPatch holds the fields a PATCH sets; nil leaves a field as it is.
type WebhookPatch struct {
	URL           *string
	EventTypeIDs  []uuid.UUID
	CustomHeaders map[string]string
	CustomPayload map[string]any
	Enabled       *bool
	SetFilter     bool   // replace the filter with Filter (nil removes it)
	Filter        []byte // checked already
	// Set* replace a limit with the value in Limits (nil: back to the default).
	SetRateLimit, SetMaxConcurrency, SetTimeout bool
	Limits                                      webhook.Limits
	// Ordering, when not empty, replaces the webhook's ordering ("none" or "fifo").
	Ordering string
}

// UpdateWebhook applies a patch in one transaction. Re-enabling clears the disabled reason and
// the failure window; it resends nothing.
func UpdateWebhook(ctx context.Context, db *DB, id uuid.UUID, p WebhookPatch) (webhook.Webhook, error) {
	var out webhook.Webhook
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx
		cur, err := GetWebhook(ctx, tx, id)
		if err != nil {
			return err
		}
		if p.URL != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET url = $2 WHERE id = $1`, id, *p.URL); err != nil {
				return fmt.Errorf("update webhook %s: %w", id, err)
			}
		}
		if p.SetFilter {
			// A trigger moves the subscription version: the processor drops its cached targets.
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET filter = $2::jsonb WHERE id = $1`, id, nullBytes(p.Filter)); err != nil {
				return fmt.Errorf("update filter of webhook %s: %w", id, err)
			}
		}
		if p.SetRateLimit || p.SetMaxConcurrency || p.SetTimeout {
			_, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET
				rate_limit = CASE WHEN $2 THEN $3 ELSE rate_limit END,
				max_concurrency = CASE WHEN $4 THEN $5 ELSE max_concurrency END,
				timeout_ms = CASE WHEN $6 THEN $7 ELSE timeout_ms END WHERE id = $1`,
				id, p.SetRateLimit, p.Limits.RateLimit, p.SetMaxConcurrency, p.Limits.MaxConcurrency, p.SetTimeout, p.Limits.TimeoutMS)
			if err != nil {
				return fmt.Errorf("update limits of webhook %s: %w", id, err)
			}
		}
		if p.Ordering != "" {
			// A trigger moves the subscription version: the processor starts or stops setting
			// seq on this webhook's new deliveries.
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET ordering = $2 WHERE id = $1`, id, p.Ordering); err != nil {
				return fmt.Errorf("update ordering of webhook %s: %w", id, err)
			}
		}
		if p.Enabled != nil {
			_, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET enabled = $2,
				disabled_reason = CASE WHEN $2 THEN NULL ELSE COALESCE(disabled_reason, 'disabled by API') END,
				disabled_at = CASE WHEN $2 THEN NULL ELSE COALESCE(disabled_at, now()) END,
				failing_since = NULL WHERE id = $1`, id, *p.Enabled)
			if err != nil {
				return fmt.Errorf("update webhook %s: %w", id, err)
			}
		}
		headers, payload := cur.CustomHeaders, cur.CustomPayload
		if p.CustomHeaders != nil {
			headers = p.CustomHeaders
		}
		if p.CustomPayload != nil {
			payload = p.CustomPayload
		}
		h, pl, err := encodeConfig(headers, payload)
		if err != nil {
			return err
		}
		types := cur.EventTypeIDs
		if p.EventTypeIDs != nil {
			types = p.EventTypeIDs
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_configurations WHERE webhook_id = $1 AND NOT event_type_id = ANY($2::uuid[])`,
			id, uuidStrings(types)); err != nil {
			return fmt.Errorf("update subscriptions of webhook %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO webhook_configurations (webhook_id, event_type_id, custom_headers, custom_payload)
			SELECT $1, t, $3::jsonb, $4::jsonb FROM unnest($2::uuid[]) AS t
			ON CONFLICT (webhook_id, event_type_id) DO UPDATE SET custom_headers = excluded.custom_headers,
			    custom_payload = excluded.custom_payload, updated_at = now()`,
			id, uuidStrings(types), h, pl); err != nil {
			return fmt.Errorf("update configuration of webhook %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET updated_at = now() WHERE id = $1`, id); err != nil {
			return err
		}
		out, err = GetWebhook(ctx, tx, id)
		return err
	})
	return out, err
}

// DeleteWebhook soft-deletes a webhook and returns the object names of its files, for the
// caller to remove from the blob store. Its pending deliveries end failed when they come up.
func DeleteWebhook(ctx context.Context, db Querier, id uuid.UUID) ([]string, error) {
	res, err := db.ExecContext(ctx, `UPDATE webhook_registrations SET deleted_at = now(), enabled = false, updated_at = now()
		WHERE id = $1 AND deleted_at IS NULL`, id)
	if err != nil {
		return nil, fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, webhook.ErrNotFound
	}
	rows, err := db.QueryContext(ctx, `SELECT object_name FROM files WHERE webhook_id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("list files of webhook %s: %w", id, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// RotateSecret makes stored the webhook's secret; the old one keeps signing until `until`.
func RotateSecret(ctx context.Context, db Querier, id uuid.UUID, stored string, until time.Time) error {
	res, err := db.ExecContext(ctx, `UPDATE webhook_registrations SET previous_secret = secret, previous_secret_until = $3,
		secret = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL`, id, stored, until)
	if err != nil {
		return fmt.Errorf("rotate secret of webhook %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return webhook.ErrNotFound
	}
	return nil
}

// Delivery is a delivery as the API shows it.
type Delivery struct {
	ID             uuid.UUID
	WebhookID      uuid.UUID
	UserID         int64
	EventID        string
	EventType      string
	Status         delivery.Status
	AttemptCount   int
	NextAttemptAt  *time.Time
	LastStatusCode *int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Attempts       []Attempt
}

// Attempt is one recorded attempt.
type Attempt struct {
	Attempt         int
	StatusCode      *int
	Error           *string
	LatencyMS       float64
	ResponseExcerpt string
	CreatedAt       time.Time
}

const deliveryColumns = `id, webhook_id, user_id, event_id, event_type, status, attempt_count, next_attempt_at,
	last_status_code, created_at, updated_at`

func scanDelivery(s interface{ Scan(...any) error }) (Delivery, error) {
	var d Delivery
	err := s.Scan(&d.ID, &d.WebhookID, &d.UserID, &d.EventID, &d.EventType, &d.Status, &d.AttemptCount,
		&d.NextAttemptAt, &d.LastStatusCode, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

// ListDeliveries lists a webhook's deliveries newest first, optionally of one status.
func ListDeliveries(ctx context.Context, db Querier, webhookID uuid.UUID, status string, limit int, after Cursor) (Page[Delivery], error) {
	var page Page[Delivery]
	rows, err := db.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM delivery_states
		WHERE webhook_id = $1 AND ($2 = '' OR status = $2)
		  AND ($3::timestamptz IS NULL OR (created_at, id::text) < ($3, $4))
		ORDER BY created_at DESC, id::text DESC LIMIT $5`,
		webhookID, status, nullTime(after.At), after.ID, limit+1)
	if err != nil {
		return page, fmt.Errorf("list deliveries of webhook %s: %w", webhookID, err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, d)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.Next = &Cursor{At: last.CreatedAt, ID: last.ID.String()}
	}
	return page, rows.Err()
}

// ErrNoDelivery reports a delivery id that matches nothing.
var ErrNoDelivery = errors.New("delivery not found")

// GetDelivery loads a delivery with its attempts, oldest first.
func GetDelivery(ctx context.Context, db Querier, id uuid.UUID) (Delivery, error) {
	d, err := scanDelivery(db.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM delivery_states WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNoDelivery
	}
	if err != nil {
		return d, fmt.Errorf("load delivery %s: %w", id, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT attempt, status_code, error, latency_ms, response_excerpt, created_at
		FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return d, fmt.Errorf("load attempts of delivery %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		if err := rows.Scan(&a.Attempt, &a.StatusCode, &a.Error, &a.LatencyMS, &a.ResponseExcerpt, &a.CreatedAt); err != nil {
			return d, err
		}
		d.Attempts = append(d.Attempts, a)
	}
	return d, rows.Err()
}

// RetryDelivery queues one more attempt of a failed delivery (numbering continues, same
// webhook-id); ErrConflict when it is not failed.
func RetryDelivery(ctx context.Context, db Querier, id uuid.UUID) error {
	res, err := db.ExecContext(ctx, `UPDATE deliveries SET status = 'retrying', next_attempt_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'failed'`, id)
	if err != nil {
		return fmt.Errorf("retry delivery %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// RecoverWebhook queues one more attempt of every failed delivery of a webhook created since
// `since`, and returns how many.
func RecoverWebhook(ctx context.Context, db Querier, webhookID uuid.UUID, since time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `UPDATE deliveries SET status = 'retrying', next_attempt_at = now(), updated_at = now()
		WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2`, webhookID, since)
	if err != nil {
		return 0, fmt.Errorf("recover webhook %s: %w", webhookID, err)
	}
	return res.RowsAffected()
}

// ErrNoFile reports a file id that matches nothing (or a deleted webhook's file).
var ErrNoFile = errors.New("file not found")

// GetFile loads a file's metadata; files of deleted webhooks are gone.
func GetFile(ctx context.Context, db Querier, id uuid.UUID) (File, error) {
	var f File
	err := db.QueryRowContext(ctx, `SELECT f.id, f.webhook_id, f.user_id, f.file_name, f.object_name, f.size, f.content_type,
		f.sha256, f.uploaded_at FROM files f JOIN webhook_registrations w ON w.id = f.webhook_id
		WHERE f.id = $1 AND w.deleted_at IS NULL`, id).
		Scan(&f.ID, &f.WebhookID, &f.UserID, &f.FileName, &f.ObjectName, &f.Size, &f.ContentType, &f.SHA256, &f.UploadedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return f, ErrNoFile
	}
	if err != nil {
		return f, fmt.Errorf("load file %s: %w", id, err)
	}
	return f, nil
}

// Rejected is a rejected event as the API shows it.
type Rejected struct {
	ID         int64
	EventID    *string
	Subject    string
	Reason     string
	Payload    string
	ReceivedAt time.Time
}

// ListRejected lists rejected events, newest first.
func ListRejected(ctx context.Context, db Querier, limit int, after Cursor) (Page[Rejected], error) {
	var page Page[Rejected]
	afterID, _ := strconv.ParseInt(after.ID, 10, 64)
	rows, err := db.QueryContext(ctx, `SELECT id, event_id, subject, reason, payload, received_at FROM rejected_events
		WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2`, afterID, limit+1)
	if err != nil {
		return page, fmt.Errorf("list rejected events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Rejected
		if err := rows.Scan(&r.ID, &r.EventID, &r.Subject, &r.Reason, &r.Payload, &r.ReceivedAt); err != nil {
			return page, err
		}
		page.Items = append(page.Items, r)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.Next = &Cursor{At: last.ReceivedAt, ID: strconv.FormatInt(last.ID, 10)}
	}
	return page, rows.Err()
}

// Prune deletes events received before eventsBefore and attempt rows made before
// attemptsBefore, at most limit rows of each per call; it returns how many rows went. Deliveries
// keep their rendered body, so a delivery outlives its event row.
func Prune(ctx context.Context, db Querier, eventsBefore, attemptsBefore time.Time, limit int) (int64, error) {
	// By the whole key: another user's event with the same id may be newer.
	res, err := db.ExecContext(ctx, `DELETE FROM events WHERE (id, user_id) IN
		(SELECT id, user_id FROM events WHERE received_at < $1 LIMIT $2)`, eventsBefore, limit)
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	n, _ := res.RowsAffected()
	// A first-attempt success is recorded by its attempt row alone (delivery_states): before
	// that row goes, its delivery's row is settled to succeeded, off the hot path.
	res, err = db.ExecContext(ctx, `WITH doomed AS (
			SELECT delivery_id, attempt, status_code, error, created_at FROM delivery_attempts WHERE created_at < $1 LIMIT $2
		), settled AS (
			UPDATE deliveries d SET status = 'succeeded', attempt_count = x.attempt, last_status_code = x.status_code,
			       next_attempt_at = NULL, updated_at = x.created_at
			FROM doomed x WHERE d.id = x.delivery_id AND d.status = 'pending' AND x.attempt = d.attempt_count + 1
			  AND x.status_code BETWEEN 200 AND 299 AND x.error IS NULL
		)
		DELETE FROM delivery_attempts WHERE (delivery_id, attempt) IN (SELECT delivery_id, attempt FROM doomed)`, attemptsBefore, limit)
	if err != nil {
		return n, fmt.Errorf("prune delivery attempts: %w", err)
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}
