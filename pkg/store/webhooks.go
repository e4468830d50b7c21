package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookline/hookline/pkg/webhook"
)

// ErrDuplicate reports a row that already exists under a unique name.
var ErrDuplicate = errors.New("already exists")

// ListEventTypes returns every event type, by name.
func ListEventTypes(ctx context.Context, db Querier) ([]webhook.EventType, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, name, description FROM event_types ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list event types: %w", err)
	}
	defer rows.Close()
	var out []webhook.EventType
	for rows.Next() {
		var t webhook.EventType
		if err := rows.Scan(&t.ID, &t.Name, &t.Description); err != nil {
			return nil, fmt.Errorf("list event types: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// CreateEventType adds a type; ErrDuplicate when the name is taken.
func CreateEventType(ctx context.Context, db Querier, name, description string) (webhook.EventType, error) {
	t := webhook.EventType{Name: name, Description: description}
	err := db.QueryRowContext(ctx,
		"INSERT INTO event_types (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
		name, description).Scan(&t.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrDuplicate
	}
	if err != nil {
		return t, fmt.Errorf("create event type %s: %w", name, err)
	}
	return t, nil
}

// EventTypeIDsByName maps names to ids for the given names that exist.
func EventTypeIDByName(ctx context.Context, db Querier, name string) (uuid.UUID, error) {
	var id uuid.UUID
	err := db.QueryRowContext(ctx, "SELECT id FROM event_types WHERE name = $1", name).Scan(&id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("look up event type %s: %w", name, err)
	}
	return id, nil
}

// MissingEventTypes returns the ids among ids that name no event type.
func MissingEventTypes(ctx context.Context, db Querier, ids []uuid.UUID) ([]uuid.UUID, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT x FROM unnest($1::uuid[]) AS x WHERE NOT EXISTS (SELECT 1 FROM event_types t WHERE t.id = x)",
		uuidStrings(ids))
	if err != nil {
		return nil, fmt.Errorf("check event types: %w", err)
	}
	defer rows.Close()
	var missing []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		missing = append(missing, id)
	}
	return missing, rows.Err()
}

// NewWebhook is a registration as accepted by the API, checked already.
type NewWebhook struct {
	UserID        int64
	URL           string
	EventTypeIDs  []uuid.UUID
	CustomHeaders map[string]string
	CustomPayload map[string]any
	Secret        string // as stored (encrypted when an encryption key is set)
}

// CreateWebhook stores a registration and one webhook_configurations row per event type, in
// one transaction.
func CreateWebhook(ctx context.Context, db *DB, w NewWebhook) (webhook.Webhook, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return webhook.Webhook{}, err
	}
	headers, payload, err := encodeConfig(w.CustomHeaders, w.CustomPayload)
	if err != nil {
		return webhook.Webhook{}, err
	}
	var out webhook.Webhook
	err = db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		err := tx.QueryRowContext(ctx, `
			INSERT INTO webhook_registrations (id, user_id, url, secret)
			VALUES ($1, $2, $3, $4) RETURNING created_at, updated_at`,
			id, w.UserID, w.URL, w.Secret).Scan(&out.CreatedAt, &out.UpdatedAt)
		if err != nil {
			return fmt.Errorf("insert webhook: %w", err)
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO webhook_configurations (webhook_id, event_type_id, custom_headers, custom_payload)
			SELECT $1, t, $3::jsonb, $4::jsonb FROM unnest($2::uuid[]) AS t`,
			id, uuidStrings(w.EventTypeIDs), headers, payload)
		if err != nil {
			return fmt.Errorf("insert webhook configuration: %w", err)
		}
		return nil
	})
	if err != nil {
		return webhook.Webhook{}, err
	}
	out.ID, out.UserID, out.URL, out.Enabled = id, w.UserID, w.URL, true
	out.EventTypeIDs, out.CustomHeaders, out.CustomPayload = w.EventTypeIDs, w.CustomHeaders, w.CustomPayload
	return out, nil
}

func encodeConfig(h map[string]string, p map[string]any) (string, string, error) {
	if h == nil {
		h = map[string]string{}
	}
	if p == nil {
		p = map[string]any{}
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return "", "", fmt.Errorf("encode custom headers: %w", err)
	}
	pb, err := json.Marshal(p)
	if err != nil {
		return "", "", fmt.Errorf("encode custom payload: %w", err)
	}
	return string(hb), string(pb), nil
}

// GetWebhook loads a live (not deleted) webhook; webhook.ErrNotFound when there is none.
func GetWebhook(ctx context.Context, db Querier, id uuid.UUID) (webhook.Webhook, error) {
	var (
		w       webhook.Webhook
		reason  sql.NullString
		headers []byte
		payload []byte
		typeIDs []string
	)
	err := db.QueryRowContext(ctx, `
		SELECT w.id, w.user_id, w.url, w.enabled, w.disabled_reason, w.disabled_at, w.created_at, w.updated_at,
		       COALESCE((SELECT c.custom_headers FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at LIMIT 1), '{}'),
		       COALESCE((SELECT c.custom_payload FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at LIMIT 1), '{}'),
		       ARRAY(SELECT c.event_type_id::text FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at, c.event_type_id)
		FROM webhook_registrations w WHERE w.id = $1 AND w.deleted_at IS NULL`, id).
		Scan(&w.ID, &w.UserID, &w.URL, &w.Enabled, &reason, &w.DisabledAt, &w.CreatedAt, &w.UpdatedAt,
			&headers, &payload, pgdialect.Array(&typeIDs))
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Webhook{}, webhook.ErrNotFound
	}
	if err != nil {
		return webhook.Webhook{}, fmt.Errorf("load webhook %s: %w", id, err)
	}
	w.DisabledReason = reason.String
	if err := json.Unmarshal(headers, &w.CustomHeaders); err != nil {
		return webhook.Webhook{}, fmt.Errorf("decode custom headers of webhook %s: %w", id, err)
	}
	if err := json.Unmarshal(payload, &w.CustomPayload); err != nil {
		return webhook.Webhook{}, fmt.Errorf("decode custom payload of webhook %s: %w", id, err)
	}
	for _, s := range typeIDs {
		w.EventTypeIDs = append(w.EventTypeIDs, uuid.MustParse(s))
	}
	return w, nil
}

// Target is what the dispatcher needs to send to one webhook: where, with which headers and
// signed with which secrets. Headers are per event type, as webhook_configurations keeps them.
type Target struct {
	ID                  uuid.UUID
	URL                 string
	Enabled             bool
	Deleted             bool
	Secret              string
	PreviousSecret      string // signs too until PreviousSecretUntil (secret rotation)
	PreviousSecretUntil time.Time
	Headers             map[string]map[string]string // event type name -> custom headers
	Failing             bool                         // failing_since is set: the next 2xx clears it
}

// LoadTarget reads a webhook for delivery, deleted or not; webhook.ErrNotFound when the id is
// unknown.
func LoadTarget(ctx context.Context, db Querier, id uuid.UUID) (Target, error) {
	t := Target{ID: id, Headers: map[string]map[string]string{}}
	var (
		deletedAt *time.Time
		prev      sql.NullString
		prevUntil *time.Time
	)
	err := db.QueryRowContext(ctx, `
		SELECT url, enabled, deleted_at, secret, previous_secret, previous_secret_until, failing_since IS NOT NULL
		FROM webhook_registrations WHERE id = $1`, id).
		Scan(&t.URL, &t.Enabled, &deletedAt, &t.Secret, &prev, &prevUntil, &t.Failing)
	if errors.Is(err, sql.ErrNoRows) {
		return Target{}, webhook.ErrNotFound
	}
	if err != nil {
		return Target{}, fmt.Errorf("load webhook %s: %w", id, err)
	}
	t.Deleted = deletedAt != nil
	if prev.Valid && prevUntil != nil {
		t.PreviousSecret, t.PreviousSecretUntil = prev.String, *prevUntil
	}
	rows, err := db.QueryContext(ctx, `
		SELECT t.name, c.custom_headers FROM webhook_configurations c
		JOIN event_types t ON t.id = c.event_type_id WHERE c.webhook_id = $1`, id)
	if err != nil {
		return Target{}, fmt.Errorf("load headers of webhook %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name string
			raw  []byte
			h    map[string]string
		)
		if err := rows.Scan(&name, &raw); err != nil {
			return Target{}, err
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			return Target{}, fmt.Errorf("decode custom headers of webhook %s: %w", id, err)
		}
		t.Headers[name] = h
	}
	return t, rows.Err()
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
