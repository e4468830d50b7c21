package httpapi

import (
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/event"
)

// publishEvent is POST /events: the same contract as publishing to events.<type> on NATS. The
// body is checked here as the processor will check it, so a malformed event is a 422 now, not
// a rejected event later; whether the type and user exist is the processor's to decide.
func (a *API) publishEvent(c *fiber.Ctx) error {
	f, err := a.jsonObject(c)
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
	return ok(c, "ok", fiber.Map{"id": e.ID})
}
