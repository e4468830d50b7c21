package httpapi

import (
	"fmt"

	"github.com/gofiber/fiber/v2"

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

// createEventType is POST /event_type (admin): {name, description}; a name taken is a 409.
func (a *API) createEventType(c *fiber.Ctx) error {
	f, err := a.jsonObject(c, []string{"name", "description"})
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
		if desc, err = f.str("description"); err != nil {
			return err
		}
		if len(desc) > 1000 {
			return fieldError("description", "must be at most 1000 characters")
		}
	}
	t, err := store.CreateEventType(c.UserContext(), a.db, name, desc)
	if err != nil {
		return fmt.Errorf("event type %q: %w", name, err) // store.ErrDuplicate: 409
	}
	return ok(c, "Event type created", newEventTypeJSON(t))
}
