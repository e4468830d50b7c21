package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
)

func (a *API) listEventTypes(c *fiber.Ctx) error {
	types, err := store.ListEventTypes(c.UserContext(), a.db)
	if err != nil {
		return err
	}
	out := make([]eventTypeJSON, 0, len(types))
	for _, t := range types {
		out = append(out, newEventTypeJSON(t))
	}
	return ok(c, "ok", out)
}

// createEventType is POST /event_type (admin): {name, description, schema}; a name taken is a
// 409.
func (a *API) createEventType(c *fiber.Ctx) error {
	f, err := a.jsonObject(c, []string{"name", "description", "schema"})
	if err != nil {
		return err
	}
	if !f.has("name") {
		return fieldError("name", "is required")
	}
	name, err := f.str("name")
	if err != nil {
		return err
	}
	if !event.ValidTypeName(name) {
		return fieldError("name", "must match ^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$ and be at most 100 characters")
	}
	var desc string
	if f.has("description") {
		if desc, err = description(f); err != nil {
			return err
		}
	}
	schema, err := schemaField(f)
	if err != nil {
		return err
	}
	t, err := store.CreateEventType(c.UserContext(), a.db, name, desc, schema)
	if err != nil {
		return fmt.Errorf("event type %q: %w", name, err) // store.ErrDuplicate: 409
	}
	a.schemas.forget(name)
	a.log.InfoContext(c.UserContext(), "event type created", "event_type", name)
	return ok(c, "Event type created", newEventTypeJSON(t))
}

// patchEventType is PATCH /event_type/{id} (admin): description and schema; "schema": null
// removes the schema. The name cannot change: it is the subject events are published on.
func (a *API) patchEventType(c *fiber.Ctx) error {
	id, err := pathUUID(c, "id", store.ErrNoEventType)
	if err != nil {
		return err
	}
	f, err := a.jsonObject(c, []string{"description", "schema"})
	if err != nil {
		return err
	}
	var p store.EventTypePatch
	if f.has("description") {
		d, err := description(f)
		if err != nil {
			return err
		}
		p.Description = &d
	}
	if _, set := f["schema"]; set {
		p.SetSchema = true
		if p.Schema, err = schemaField(f); err != nil {
			return err
		}
	}
	t, err := store.UpdateEventType(c.UserContext(), a.db, id, p)
	if err != nil {
		return notFoundOr(err, store.ErrNoEventType, id)
	}
	a.schemas.forget(t.Name)
	a.log.InfoContext(c.UserContext(), "event type updated", "event_type", t.Name, "schema_changed", p.SetSchema)
	return ok(c, "Event type updated", newEventTypeJSON(t))
}

// deleteEventType is DELETE /event_type/{id} (admin): 409 while a live webhook subscribes, and
// for upload.completed, which uploads publish.
func (a *API) deleteEventType(c *fiber.Ctx) error {
	id, err := pathUUID(c, "id", store.ErrNoEventType)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	t, err := store.GetEventType(ctx, a.db, id)
	if err != nil {
		return notFoundOr(err, store.ErrNoEventType, id)
	}
	if t.Name == event.UploadCompleted {
		return fail(fiber.StatusConflict, "event type "+event.UploadCompleted+" is published by every upload and cannot be deleted")
	}
	if err := store.DeleteEventType(ctx, a.db, id); err != nil {
		return notFoundOr(err, store.ErrNoEventType, id) // store.ErrConflict: 409
	}
	a.schemas.forget(t.Name)
	a.log.InfoContext(ctx, "event type deleted", "event_type", t.Name)
	return ok(c, "Event type deleted", idJSON{id.String()})
}

func description(f fields) (string, error) {
	d, err := f.str("description")
	if err != nil {
		return "", err
	}
	if len(d) > 1000 {
		return "", fieldError("description", "must be at most 1000 characters")
	}
	return d, nil
}

// schemaField reads an optional JSON Schema (2020-12) for the type's data: nil when absent or
// null, else a document that compiles, at most event.MaxSchemaBytes.
func schemaField(f fields) ([]byte, error) {
	if !f.has("schema") {
		return nil, nil
	}
	raw := f["schema"]
	if len(raw) > event.MaxSchemaBytes {
		return nil, fieldError("schema", "must be at most "+strconv.Itoa(event.MaxSchemaBytes)+" bytes")
	}
	if _, err := event.CompileSchema(raw); err != nil {
		return nil, fieldError("schema", err.Error())
	}
	if err := event.StorableJSON("schema", raw); err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

// notFoundOr names the id in a "not found" sentinel; other errors pass as they are.
func notFoundOr(err, sentinel error, id uuid.UUID) error {
	if errors.Is(err, sentinel) {
		return notFound(sentinel, id.String())
	}
	return err
}
