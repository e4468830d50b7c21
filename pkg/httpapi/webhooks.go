package httpapi

import (
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

func (a *API) listEventTypes(c *fiber.Ctx) error {
	types, err := store.ListEventTypes(c.UserContext(), a.db)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, 0, len(types))
	for _, t := range types {
		out = append(out, fiber.Map{"id": t.ID, "name": t.Name, "description": t.Description})
	}
	return ok(c, "ok", out)
}

// registration is a checked POST /webhook/register body.
type registration struct {
	UserID        int64
	URL           string
	EventTypeIDs  []uuid.UUID
	CustomHeaders map[string]string
	CustomPayload map[string]any
}

// parseRegistration checks every field in the order a person reads the body.
func parseRegistration(f fields) (registration, error) {
	var (
		r   registration
		err error
	)
	switch {
	case f.has("event_type_ids"):
		if r.EventTypeIDs, err = f.uuids("event_type_ids"); err != nil {
			return r, err
		}
	case f.has("event_type_id"):
		id, err := f.uuid("event_type_id")
		if err != nil {
			return r, err
		}
		r.EventTypeIDs = []uuid.UUID{id}
	default:
		return r, fieldError("event_type_id", "is required")
	}
	if !f.has("user_id") {
		return r, fieldError("user_id", "is required")
	}
	if r.UserID, err = f.positiveInt("user_id"); err != nil {
		return r, err
	}
	if !f.has("url") {
		return r, fieldError("url", "is required")
	}
	raw, err := f.str("url")
	if err != nil {
		return r, err
	}
	if r.URL, err = webhook.ValidateURL(raw); err != nil {
		return r, err
	}
	if f.has("custom_headers") {
		if r.CustomHeaders, err = f.stringMap("custom_headers"); err != nil {
			return r, err
		}
		if err := webhook.ValidateHeaders(r.CustomHeaders); err != nil {
			return r, err
		}
	}
	if f.has("custom_payload") {
		if r.CustomPayload, err = f.object("custom_payload"); err != nil {
			return r, err
		}
		if err := webhook.ValidatePayload(r.CustomPayload); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (a *API) registerWebhook(c *fiber.Ctx) error {
	f, err := a.jsonObject(c)
	if err != nil {
		return err
	}
	r, err := parseRegistration(f)
	if err != nil {
		return err
	}
	if err := forUser(c, r.UserID); err != nil {
		return err
	}
	ctx := c.UserContext()
	missing, err := store.MissingEventTypes(ctx, a.db, r.EventTypeIDs)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		field := "event_type_ids"
		if !f.has(field) {
			field = "event_type_id"
		}
		return fieldError(field, "no event type with id "+missing[0].String())
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	stored, err := a.opts.Sealer.Seal(secret) // encrypted at rest when a key is set
	if err != nil {
		return err
	}
	w, err := store.CreateWebhook(ctx, a.db, store.NewWebhook{UserID: r.UserID, URL: r.URL, EventTypeIDs: r.EventTypeIDs,
		CustomHeaders: r.CustomHeaders, CustomPayload: r.CustomPayload, Secret: stored})
	if err != nil {
		return err
	}
	a.log.InfoContext(ctx, "webhook registered", "webhook_id", w.ID, "user_id", w.UserID)
	out := webhookJSON(w)
	out["secret"] = string(secret) // shown once, never again
	return ok(c, "Register Webhook Successfully!", out)
}

func (a *API) getWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	return ok(c, "ok", webhookJSON(w))
}

// webhookJSON is the webhook object of DESIGN §10; never the secret.
func webhookJSON(w webhook.Webhook) fiber.Map {
	headers, payload := w.CustomHeaders, w.CustomPayload
	if headers == nil {
		headers = map[string]string{}
	}
	if payload == nil {
		payload = map[string]any{}
	}
	ids := w.EventTypeIDs
	if ids == nil {
		ids = []uuid.UUID{}
	}
	m := fiber.Map{"id": w.ID, "user_id": w.UserID, "url": w.URL, "event_type_ids": ids,
		"custom_headers": headers, "custom_payload": payload, "enabled": w.Enabled,
		"disabled_reason": nil, "disabled_at": nil,
		"created_at": timestamp(w.CreatedAt), "updated_at": timestamp(w.UpdatedAt)}
	if w.DisabledReason != "" {
		m["disabled_reason"] = w.DisabledReason
	}
	if w.DisabledAt != nil {
		m["disabled_at"] = timestamp(*w.DisabledAt)
	}
	return m
}
