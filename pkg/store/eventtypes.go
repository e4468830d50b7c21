package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/webhook"
)

// ErrDuplicate reports a row that already exists under a unique name.
var ErrDuplicate = errors.New("already exists")

// ErrNoEventType reports an event type id that matches no event type.
var ErrNoEventType = errors.New("event type not found")

const eventTypeColumns = "id, name, description, schema"

func scanEventType(row interface{ Scan(...any) error }) (webhook.EventType, error) {
	var (
		t      webhook.EventType
		schema []byte
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Description, &schema); err != nil {
		return t, err
	}
	if schema != nil {
		t.Schema = schema
	}
	return t, nil
}

// ListEventTypes returns every event type, by name.
func ListEventTypes(ctx context.Context, db Querier) ([]webhook.EventType, error) {
	rows, err := db.QueryContext(ctx, "SELECT "+eventTypeColumns+" FROM event_types ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list event types: %w", err)
	}
	defer rows.Close()
	var out []webhook.EventType
	for rows.Next() {
		t, err := scanEventType(rows)
		if err != nil {
			return nil, fmt.Errorf("list event types: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// EventTypeNames returns the names of every event type.
func EventTypeNames(ctx context.Context, db Querier) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM event_types")
	if err != nil {
		return nil, fmt.Errorf("list event type names: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list event type names: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// GetEventType loads one event type; ErrNoEventType when the id is unknown.
func GetEventType(ctx context.Context, db Querier, id uuid.UUID) (webhook.EventType, error) {
	t, err := scanEventType(db.QueryRowContext(ctx, "SELECT "+eventTypeColumns+" FROM event_types WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNoEventType
	}
	if err != nil {
		return t, fmt.Errorf("load event type %s: %w", id, err)
	}
	return t, nil
}

// CreateEventType adds a type (schema nil for none); ErrDuplicate when the name is taken.
func CreateEventType(ctx context.Context, db Querier, name, description string, schema []byte) (webhook.EventType, error) {
	t := webhook.EventType{Name: name, Description: description, Schema: schema}
	err := db.QueryRowContext(ctx,
		"INSERT INTO event_types (name, description, schema) VALUES ($1, $2, $3::jsonb) ON CONFLICT (name) DO NOTHING RETURNING id",
		name, description, nullBytes(schema)).Scan(&t.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrDuplicate
	}
	if err != nil {
		return t, fmt.Errorf("create event type %s: %w", name, err)
	}
	return t, nil
}

// EventTypePatch changes an event type: a nil Description is kept; SetSchema replaces the
// schema with Schema (nil removes it).
type EventTypePatch struct {
	Description *string
	SetSchema   bool
	Schema      []byte
}

// UpdateEventType applies p; ErrNoEventType when the id is unknown. A schema change bumps the
// subscription version (a trigger), so the processor stops using the schema it cached.
func UpdateEventType(ctx context.Context, db Querier, id uuid.UUID, p EventTypePatch) (webhook.EventType, error) {
	t, err := scanEventType(db.QueryRowContext(ctx, `
		UPDATE event_types SET description = COALESCE($2, description),
		       schema = CASE WHEN $3 THEN $4::jsonb ELSE schema END
		WHERE id = $1 RETURNING `+eventTypeColumns, id, p.Description, p.SetSchema, nullBytes(p.Schema)))
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNoEventType
	}
	if err != nil {
		return t, fmt.Errorf("update event type %s: %w", id, err)
	}
	return t, nil
}

// DeleteEventType removes an event type that no live webhook subscribes to (the subscriptions
// of deleted webhooks go with it). ErrNoEventType when the id is unknown, ErrConflict while a
// webhook subscribes. Events and deliveries keep the type's name as text.
func DeleteEventType(ctx context.Context, db Querier, id uuid.UUID) error {
	var found, subscribed bool
	// One statement: the check and the delete see the same snapshot, and the row lock of the
	// DELETE's FK check (webhook_configurations references the type) makes a concurrent
	// subscription wait or fail rather than point at nothing.
	err := db.QueryRowContext(ctx, `
		WITH t AS (
			SELECT id FROM event_types WHERE id = $1 FOR UPDATE
		), live AS (
			SELECT EXISTS (SELECT 1 FROM webhook_configurations c JOIN webhook_registrations w ON w.id = c.webhook_id
			               WHERE c.event_type_id = $1 AND w.deleted_at IS NULL) AS yes
		), gone AS (
			DELETE FROM webhook_configurations c WHERE c.event_type_id = $1 AND NOT (SELECT yes FROM live)
			  AND EXISTS (SELECT 1 FROM t)
		), del AS (
			DELETE FROM event_types e WHERE e.id = $1 AND NOT (SELECT yes FROM live)
		)
		SELECT EXISTS (SELECT 1 FROM t), (SELECT yes FROM live)`, id).Scan(&found, &subscribed)
	if err != nil {
		return fmt.Errorf("delete event type %s: %w", id, err)
	}
	switch {
	case !found:
		return ErrNoEventType
	case subscribed:
		return fmt.Errorf("%w: event type %s has subscribed webhooks", ErrConflict, id)
	}
	return nil
}

// EventTypeSchema returns the schema of the event type named name: nil when it has none or
// there is no such type.
func EventTypeSchema(ctx context.Context, db Querier, name string) ([]byte, error) {
	var schema []byte
	err := db.QueryRowContext(ctx, "SELECT schema FROM event_types WHERE name = $1", name).Scan(&schema)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load schema of event type %s: %w", name, err)
	}
	return schema, nil
}

// EventTypeIDByName returns the id of the event type named name.
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

func nullBytes(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}
