package httpapi

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	if err := a.checkUpload(c, e); err != nil {
		return err
	}
	dup, err := a.publishOnce(c, e)
	if err != nil {
		return err
	}
	return ok(c, "ok", acceptedEventJSON{ID: e.ID, Duplicate: dup})
}

// publishOnce sends an event of POST /events to events.<type> with Nats-Msg-Id =
// event.MsgID(user, id) and waits for the ack. Event ids are per user, so the message id
// carries the user: another user's event with the same id is not dropped by the stream's
// duplicate window, while this user's retry is. duplicate is JetStream's word that the stream
// already held that message id: nothing new was stored. (An upload's event id is a fresh
// UUID, so publish keeps the bare id.)
func (a *API) publishOnce(c *fiber.Ctx, e event.Event) (duplicate bool, err error) {
	body, err := event.Encode(e)
	if err != nil {
		return false, err
	}
	ack, err := a.js.Publish(c.UserContext(), event.Subject(e.Type), body, jetstream.WithMsgID(event.MsgID(e.UserID, e.ID)))
	if err != nil {
		return false, fail(fiber.StatusServiceUnavailable, "event not accepted by JetStream, try again: "+err.Error())
	}
	if ack.Duplicate {
		return true, nil
	}
	a.m.EventsPublished.WithLabelValues(a.typeLabel(c.UserContext(), e.Type)).Inc()
	return false, nil
}

// checkUpload refuses an upload.completed event that announces a file (data.file_id) its user
// does not own: it must be sent to the file's webhook (webhook_id = data.webhook_id), a live
// webhook of that user, and the file may not exist as another user's. Each is a 422 naming the
// field, and another user's webhook reads like a missing one. The processor checks the same
// for events published on NATS (rejection not_owner or unknown_webhook); checking here too
// answers now, rather than with a 200 and a rejection later.
func (a *API) checkUpload(c *fiber.Ctx, e event.Event) error {
	if e.Type != event.UploadCompleted {
		return nil
	}
	var u event.UploadData
	if err := json.Unmarshal(e.Data, &u); err != nil {
		return fieldError("data", "is not an upload.completed object: "+err.Error())
	}
	if u.FileID == uuid.Nil {
		return nil // announces no stored file
	}
	if e.WebhookID == nil || *e.WebhookID != u.WebhookID {
		return fieldError("data.webhook_id", "must equal webhook_id: an upload.completed that announces a file is sent to that file's webhook")
	}
	ctx := c.UserContext()
	owner, err := store.WebhookOwner(ctx, a.db, u.WebhookID)
	if err != nil {
		return err
	}
	if owner != e.UserID {
		return fieldError("webhook_id", "is not a webhook of user "+strconv.FormatInt(e.UserID, 10))
	}
	owners, err := store.FileOwners(ctx, a.db, []uuid.UUID{u.FileID})
	if err != nil {
		return err
	}
	if owner, ok := owners[u.FileID]; ok && owner != e.UserID {
		return fieldError("data.file_id", "is not a file of user "+strconv.FormatInt(e.UserID, 10))
	}
	return nil
}

// acceptedEventJSON answers POST /events. Duplicate is true when the same user already sent an
// event with this id inside JetStream's duplicate window (2 minutes): nothing new was stored.
// A repeat after the window is published again and creates nothing either (the processor
// keeps one event per user and id), but is answered false.
type acceptedEventJSON struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
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

// getEvent is GET /events/{id}?user_id=: a stored event and its deliveries, for its user's key
// or an admin key. Event ids are per user: a user key sees its own event with that id (another
// user's is a 404, like a missing one); an admin key names the user when several sent the id.
func (a *API) getEvent(c *fiber.Ctx) error {
	id := c.Params("id")
	userID := principal(c).UserID // 0 for an admin key: whichever user sent it
	if s := c.Query("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fieldError("user_id", "must be a positive integer")
		}
		if err := forUser(c, n); err != nil {
			return err
		}
		userID = n
	}
	if !event.ValidID(id) {
		return notFound(store.ErrNoEvent, id)
	}
	e, err := store.GetEvent(c.UserContext(), a.db, userID, id)
	if err == nil && !principal(c).may(e.UserID) {
		err = store.ErrNoEvent
	}
	switch {
	case errors.Is(err, store.ErrNoEvent):
		return notFound(store.ErrNoEvent, id)
	case errors.Is(err, store.ErrEventAmbiguous):
		return fieldError("user_id", "is required: several users sent an event with this id")
	case err != nil:
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
