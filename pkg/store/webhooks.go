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

// NewWebhook is a registration as accepted by the API, checked already.
type NewWebhook struct {
	UserID        int64
	URL           string
	EventTypeIDs  []uuid.UUID
	CustomHeaders map[string]string
	CustomPayload map[string]any
	Filter        []byte // payload filter, checked already; nil for none
	Limits        webhook.Limits
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
			INSERT INTO webhook_registrations (id, user_id, url, secret, filter, rate_limit, max_concurrency, timeout_ms, ordering)
			VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, COALESCE(NULLIF($9, ''), 'none')) RETURNING created_at, updated_at`,
			id, w.UserID, w.URL, w.Secret, nullBytes(w.Filter), w.Limits.RateLimit, w.Limits.MaxConcurrency, w.Limits.TimeoutMS,
			w.Limits.Ordering).Scan(&out.CreatedAt, &out.UpdatedAt)
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
	out.EventTypeIDs, out.CustomHeaders, out.CustomPayload, out.Filter = w.EventTypeIDs, w.CustomHeaders, w.CustomPayload, w.Filter
	out.Limits = w.Limits
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
		filter  []byte
	)
	err := db.QueryRowContext(ctx, `
		SELECT w.id, w.user_id, w.url, w.enabled, w.disabled_reason, w.disabled_at, w.created_at, w.updated_at, w.filter,
		       w.rate_limit, w.max_concurrency, w.timeout_ms, w.ordering,
		       COALESCE((SELECT c.custom_headers FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at LIMIT 1), '{}'),
		       COALESCE((SELECT c.custom_payload FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at LIMIT 1), '{}'),
		       ARRAY(SELECT c.event_type_id::text FROM webhook_configurations c WHERE c.webhook_id = w.id ORDER BY c.created_at, c.event_type_id)
		FROM webhook_registrations w WHERE w.id = $1 AND w.deleted_at IS NULL`, id).
		Scan(&w.ID, &w.UserID, &w.URL, &w.Enabled, &reason, &w.DisabledAt, &w.CreatedAt, &w.UpdatedAt, &filter,
			&w.Limits.RateLimit, &w.Limits.MaxConcurrency, &w.Limits.TimeoutMS, &w.Limits.Ordering,
			&headers, &payload, pgdialect.Array(&typeIDs))
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.Webhook{}, webhook.ErrNotFound
	}
	if err != nil {
		return webhook.Webhook{}, fmt.Errorf("load webhook %s: %w", id, err)
	}
	w.DisabledReason = reason.String
	if filter != nil {
		w.Filter = filter
	}
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
	Limits              webhook.Limits
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
		SELECT url, enabled, deleted_at, secret, previous_secret, previous_secret_until, failing_since IS NOT NULL,
		       rate_limit, max_concurrency, timeout_ms, ordering
		FROM webhook_registrations WHERE id = $1`, id).
		Scan(&t.URL, &t.Enabled, &deletedAt, &t.Secret, &prev, &prevUntil, &t.Failing,
			&t.Limits.RateLimit, &t.Limits.MaxConcurrency, &t.Limits.TimeoutMS, &t.Limits.Ordering)
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
