package httpapi

import (
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
