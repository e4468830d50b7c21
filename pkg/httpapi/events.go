package httpapi

import (
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
)

// eventFields are the keys of an event body (docs/events.md). On NATS unknown keys are
// ignored, so publishers can add some; POST /events refuses them, as every body of the API
// does: a misspelt webhook_id would otherwise fan the event out to every subscriber.
var eventFields = []string{"id", "type", "user_id", "webhook_id", "occurred_at", "data"}

// publishEvent is POST /events: the same contract as publishing to events.<type> on NATS. The
// body is checked here as the processor will check it, so a malformed event is a 422 now, not
// a rejected event later; whether the type and user exist is the processor's to decide.
func (a *API) publishEvent(c *fiber.Ctx) error {
	f, err := a.jsonObject(c, eventFields)
	if err != nil {
		return err
	}
	if !f.has("type") {
		return fieldError("type", "is required")
	}
	typ, err := f.str("type")
	if err != nil {
		return err
	}
	if !event.ValidTypeName(typ) {
		return fieldError("type", "must be an event type name like upload.completed")
	}
	e, err := event.Decode(event.Subject(typ), c.Get(nats.MsgIdHdr), c.Body(), time.Now().UTC())
	if err != nil {
		return err
	}
	if err := forUser(c, e.UserID); err != nil {
		return err
	}
	// The type's schema, when it has one: a 422 naming the failing path now, rather than a
	// rejection later (the processor checks again, against the schema current then).
	schema, err := a.schemas.get(c.UserContext(), a.db, e.Type)
	if err != nil {
		return err
	}
	if schema != nil {
		if err := schema.Validate(e.Data); err != nil {
			return err
		}
	}
	if err := a.publish(c, e); err != nil {
		return err
	}
	return ok(c, "ok", idJSON{e.ID})
}

// listRejected is GET /events/rejected (admin): events the processor refused, newest first.
func (a *API) listRejected(c *fiber.Ctx) error {
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListRejected(c.UserContext(), a.db, limit, cur)
	if err != nil {
		return err
	}
	out := make([]rejectedJSON, 0, len(pg.Items))
	for _, r := range pg.Items {
		out = append(out, newRejectedJSON(r))
	}
	return listed(c, out, pg.Next)
}

// getEvent is GET /events/{id}: a stored event and its deliveries, for its user's key or an
// admin key. Another user's event is a 404, like a missing one.
func (a *API) getEvent(c *fiber.Ctx) error {
	id := c.Params("id")
	if !event.ValidID(id) {
		return notFound(store.ErrNoEvent, id)
	}
	e, err := store.GetEvent(c.UserContext(), a.db, id)
	if err == nil && !principal(c).may(e.UserID) {
		err = store.ErrNoEvent
	}
	if errors.Is(err, store.ErrNoEvent) {
		return notFound(store.ErrNoEvent, id)
	}
	if err != nil {
		return err
	}
	return ok(c, "ok", newEventDetailJSON(e))
}

// listEvents is GET /events?type=&since=&until=&user_id=&limit=&cursor=: stored events, newest
// first by receipt. A user key sees its own; an admin key every user's, or one user's.
func (a *API) listEvents(c *fiber.Ctx) error {
	filter := store.EventFilter{UserID: principal(c).UserID, Type: c.Query("type")}
	if s := c.Query("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fieldError("user_id", "must be a positive integer")
		}
		if err := forUser(c, n); err != nil {
			return err
		}
		filter.UserID = n
	}
	if filter.Type != "" && !event.ValidTypeName(filter.Type) {
		return fieldError("type", "must be an event type name like upload.completed")
	}
	for _, q := range []struct {
		name string
		to   *time.Time
	}{{"since", &filter.Since}, {"until", &filter.Until}} {
		if s := c.Query(q.name); s != "" {
			t, err := parseTime(s)
			if err != nil {
				return fieldError(q.name, "must be YYYY-MM-DD HH:MM:SS (UTC) or RFC3339")
			}
			*q.to = t
		}
	}
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListEvents(c.UserContext(), a.db, filter, limit, cur)
	if err != nil {
		return err
	}
	out := make([]storedEventJSON, 0, len(pg.Items))
	for _, e := range pg.Items {
		out = append(out, newStoredEventJSON(e))
	}
	return listed(c, out, pg.Next)
}
