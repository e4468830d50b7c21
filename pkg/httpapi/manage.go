package httpapi

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

func (a *API) createEventType(c *fiber.Ctx) error {
	f, err := a.jsonObject(c)
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
	if errors.Is(err, store.ErrDuplicate) {
		return fail(fiber.StatusConflict, "an event type named "+strconv.Quote(name)+" exists")
	}
	if err != nil {
		return err
	}
	return ok(c, "Event type created", fiber.Map{"id": t.ID, "name": t.Name, "description": t.Description})
}

// ownWebhook loads the path's webhook if the key may see it; 404 otherwise, so another
// tenant's webhook looks exactly like a missing one.
func (a *API) ownWebhook(c *fiber.Ctx, param string) (webhook.Webhook, error) {
	id, err := pathUUID(c, param, "webhook")
	if err != nil {
		return webhook.Webhook{}, err
	}
	w, err := store.GetWebhook(c.UserContext(), a.db, id)
	if errors.Is(err, webhook.ErrNotFound) || err == nil && !principal(c).may(w.UserID) {
		return webhook.Webhook{}, fail(fiber.StatusNotFound, "webhook not found")
	}
	return w, err
}

// page reads limit (1–100, default 50) and cursor.
func page(c *fiber.Ctx) (int, store.Cursor, error) {
	limit := 50
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return 0, store.Cursor{}, fieldError("limit", "must be an integer from 1 to 100")
		}
		limit = n
	}
	cur, err := store.ParseCursor(c.Query("cursor"))
	if err != nil {
		return 0, store.Cursor{}, fieldError("cursor", "is not a cursor this API issued")
	}
	return limit, cur, nil
}

// listed answers a page with next_cursor in the envelope when more remain.
func listed(c *fiber.Ctx, items any, next *store.Cursor) error {
	body := fiber.Map{"message": "ok", "data": items, "error": false}
	if next != nil {
		body["next_cursor"] = next.Encode()
	}
	return c.JSON(body)
}

func (a *API) listWebhooks(c *fiber.Ctx) error {
	p := principal(c)
	user := p.UserID
	if s := c.Query("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fieldError("user_id", "must be a positive integer")
		}
		if err := forUser(c, n); err != nil {
			return err
		}
		user = n
	}
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListWebhooks(c.UserContext(), a.db, user, limit, cur)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, 0, len(pg.Items))
	for _, w := range pg.Items {
		out = append(out, webhookJSON(w))
	}
	return listed(c, out, pg.Next)
}

func (a *API) patchWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	f, err := a.jsonObject(c)
	if err != nil {
		return err
	}
	for k := range f {
		switch k {
		case "url", "event_type_id", "event_type_ids", "custom_headers", "custom_payload", "enabled":
		default:
			return fieldError(k, "cannot be changed (allowed: url, event_type_ids, custom_headers, custom_payload, enabled)")
		}
	}
	var p store.WebhookPatch
	if f.has("url") {
		raw, err := f.str("url")
		if err != nil {
			return err
		}
		u, err := webhook.ValidateURL(raw)
		if err != nil {
			return err
		}
		p.URL = &u
	}
	switch {
	case f.has("event_type_ids"):
		if p.EventTypeIDs, err = f.uuids("event_type_ids"); err != nil {
			return err
		}
	case f.has("event_type_id"):
		id, err := f.uuid("event_type_id")
		if err != nil {
			return err
		}
		p.EventTypeIDs = []uuid.UUID{id}
	}
	if p.EventTypeIDs != nil {
		missing, err := store.MissingEventTypes(c.UserContext(), a.db, p.EventTypeIDs)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return fieldError("event_type_ids", "no event type with id "+missing[0].String())
		}
	}
	if f.has("custom_headers") {
		if p.CustomHeaders, err = f.stringMap("custom_headers"); err != nil {
			return err
		}
		if err := webhook.ValidateHeaders(p.CustomHeaders); err != nil {
			return err
		}
	}
	if f.has("custom_payload") {
		if p.CustomPayload, err = f.object("custom_payload"); err != nil {
			return err
		}
		if err := webhook.ValidatePayload(p.CustomPayload); err != nil {
			return err
		}
	}
	if f.has("enabled") {
		var b bool
		if err := jsonBool(f["enabled"], &b); err != nil {
			return fieldError("enabled", "must be true or false")
		}
		p.Enabled = &b
	}
	out, err := store.UpdateWebhook(c.UserContext(), a.db, w.ID, p)
	if err != nil {
		return err
	}
	a.log.InfoContext(c.UserContext(), "webhook updated", "webhook_id", w.ID)
	return ok(c, "Webhook updated", webhookJSON(out))
}

func (a *API) deleteWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	objects, err := store.DeleteWebhook(ctx, a.db, w.ID)
	if errors.Is(err, webhook.ErrNotFound) {
		return fail(fiber.StatusNotFound, "webhook not found")
	}
	if err != nil {
		return err
	}
	// The webhook's files go with it (retention: objects live until their webhook is deleted).
	for _, name := range objects {
		if err := a.blobs.Delete(ctx, name); err != nil {
			a.log.WarnContext(ctx, "delete file object", "webhook_id", w.ID, "object", name, "err", err)
		}
	}
	a.log.InfoContext(ctx, "webhook deleted", "webhook_id", w.ID, "files", len(objects))
	return ok(c, "Webhook deleted", fiber.Map{"id": w.ID})
}

// RotationOverlap is how long the old secret keeps signing after a rotation.
const RotationOverlap = 24 * time.Hour

func (a *API) rotateSecret(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	stored, err := a.opts.Sealer.Seal(secret)
	if err != nil {
		return err
	}
	until := time.Now().Add(RotationOverlap)
	if err := store.RotateSecret(c.UserContext(), a.db, w.ID, stored, until); err != nil {
		return err
	}
	a.log.InfoContext(c.UserContext(), "webhook secret rotated", "webhook_id", w.ID)
	return ok(c, "Secret rotated", fiber.Map{"id": w.ID, "secret": string(secret), "previous_secret_expires_at": timestamp(until)})
}

var deliveryStatuses = map[string]bool{"": true, "pending": true, "retrying": true, "succeeded": true, "failed": true}

func (a *API) listDeliveries(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	status := c.Query("status")
	if !deliveryStatuses[status] {
		return fieldError("status", "must be one of pending, retrying, succeeded, failed")
	}
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListDeliveries(c.UserContext(), a.db, w.ID, status, limit, cur)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, 0, len(pg.Items))
	for _, d := range pg.Items {
		out = append(out, deliveryJSON(d))
	}
	return listed(c, out, pg.Next)
}

func deliveryJSON(d store.Delivery) fiber.Map {
	m := fiber.Map{"id": d.ID, "webhook_id": d.WebhookID, "event_id": d.EventID, "event_type": d.EventType,
		"status": d.Status, "attempt_count": d.AttemptCount, "next_attempt_at": nil, "last_status_code": d.LastStatusCode,
		"created_at": timestamp(d.CreatedAt), "updated_at": timestamp(d.UpdatedAt)}
	if d.NextAttemptAt != nil {
		m["next_attempt_at"] = timestamp(*d.NextAttemptAt)
	}
	return m
}

// ownDelivery loads the path's delivery if the key may see it; 404 otherwise.
func (a *API) ownDelivery(c *fiber.Ctx) (store.Delivery, error) {
	id, err := pathUUID(c, "id", "delivery")
	if err != nil {
		return store.Delivery{}, err
	}
	d, err := store.GetDelivery(c.UserContext(), a.db, id)
	if errors.Is(err, store.ErrNoDelivery) || err == nil && !principal(c).may(d.UserID) {
		return d, fail(fiber.StatusNotFound, "delivery not found")
	}
	if err != nil {
		return d, err
	}
	// A deleted webhook's deliveries are gone with it.
	if _, err := store.GetWebhook(c.UserContext(), a.db, d.WebhookID); errors.Is(err, webhook.ErrNotFound) {
		return d, fail(fiber.StatusNotFound, "delivery not found")
	} else if err != nil {
		return d, err
	}
	return d, nil
}

func (a *API) getDelivery(c *fiber.Ctx) error {
	d, err := a.ownDelivery(c)
	if err != nil {
		return err
	}
	out := deliveryJSON(d)
	attempts := make([]fiber.Map, 0, len(d.Attempts))
	for _, at := range d.Attempts {
		attempts = append(attempts, fiber.Map{"attempt": at.Attempt, "status_code": at.StatusCode, "error": at.Error,
			"latency_ms": at.LatencyMS, "response_excerpt": at.ResponseExcerpt, "created_at": timestamp(at.CreatedAt)})
	}
	out["attempts"] = attempts
	return ok(c, "ok", out)
}

func (a *API) retryDelivery(c *fiber.Ctx) error {
	d, err := a.ownDelivery(c)
	if err != nil {
		return err
	}
	if err := store.RetryDelivery(c.UserContext(), a.db, d.ID); errors.Is(err, store.ErrConflict) {
		return fail(fiber.StatusConflict, "only a failed delivery can be retried; this one is "+string(d.Status))
	} else if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(envelope{Message: "Retry queued", Data: fiber.Map{"id": d.ID}})
}

func (a *API) recoverWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	since, err := parseTime(c.Query("since"))
	if err != nil {
		return fieldError("since", "is required: YYYY-MM-DD HH:MM:SS (UTC) or RFC3339")
	}
	n, err := store.RecoverWebhook(c.UserContext(), a.db, w.ID, since)
	if err != nil {
		return err
	}
	a.log.InfoContext(c.UserContext(), "failed deliveries requeued", "webhook_id", w.ID, "count", n)
	return c.Status(fiber.StatusAccepted).JSON(envelope{Message: "Recovery queued", Data: fiber.Map{"requeued": n}})
}

// parseTime accepts the API's own format (UTC) or RFC3339.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation(time.DateTime, s, time.UTC); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

func (a *API) listRejected(c *fiber.Ctx) error {
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListRejected(c.UserContext(), a.db, limit, cur)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, 0, len(pg.Items))
	for _, r := range pg.Items {
		out = append(out, fiber.Map{"id": r.EventID, "subject": r.Subject, "reason": r.Reason, "payload": r.Payload,
			"received_at": timestamp(r.ReceivedAt)})
	}
	return listed(c, out, pg.Next)
}
