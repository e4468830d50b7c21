package httpapi

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/egress"
	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// webhookFields are the names POST /webhook/register and PATCH /webhook/{id} know; any other
// key is refused. user_id is registration's only, enabled PATCH's only.
var webhookFields = []string{"event_type_id", "event_type_ids", "user_id", "url", "custom_headers", "custom_payload", "filter",
	"rate_limit", "max_concurrency", "timeout_ms", "ordering", "enabled"}

// webhookBody is a checked registration or PATCH body; a nil field was absent (or null).
type webhookBody struct {
	UserID        int64
	URL           *string
	EventTypeIDs  []uuid.UUID
	typeField     string // event_type_ids or event_type_id, as the client wrote it
	CustomHeaders map[string]string
	CustomPayload map[string]any
	Enabled       *bool
	// SetFilter: the body has "filter" (null removes it on PATCH); Filter nil for none.
	SetFilter bool
	Filter    []byte
	// Limits holds the settings the body names (null: back to the default); set* say which.
	Limits                                      webhook.Limits
	setRateLimit, setMaxConcurrency, setTimeout bool
}

// limitFields are the per-endpoint settings: name, range, where the value goes.
func (b *webhookBody) limitFields() []struct {
	name   string
	lo, hi int
	to     **int
	set    *bool
} {
	return []struct {
		name   string
		lo, hi int
		to     **int
		set    *bool
	}{
		{"rate_limit", 1, 100_000, &b.Limits.RateLimit, &b.setRateLimit},
		{"max_concurrency", 1, 1024, &b.Limits.MaxConcurrency, &b.setMaxConcurrency},
		{"timeout_ms", 100, 60_000, &b.Limits.TimeoutMS, &b.setTimeout},
	}
}

// parseWebhook is the one parser of registration and PATCH fields: the same names and the same
// checks, in the order a person reads the body. A registration needs an event type, user_id
// and url, and may not set enabled; a PATCH may not change user_id. Every error is a field
// error.
func parseWebhook(f fields, register bool) (webhookBody, error) {
	var (
		b   webhookBody
		err error
	)
	switch {
	case f.has("event_type_ids"):
		b.typeField = "event_type_ids"
		if b.EventTypeIDs, err = f.uuids("event_type_ids"); err != nil {
			return b, err
		}
	case f.has("event_type_id"):
		b.typeField = "event_type_id"
		id, err := f.uuid("event_type_id")
		if err != nil {
			return b, err
		}
		b.EventTypeIDs = []uuid.UUID{id}
	case register:
		return b, fieldError("event_type_id", "is required")
	}
	switch {
	case register && !f.has("user_id"):
		return b, fieldError("user_id", "is required")
	case register:
		if b.UserID, err = f.positiveInt("user_id"); err != nil {
			return b, err
		}
	case f.has("user_id"):
		return b, fieldError("user_id", "cannot be changed: register a webhook for the other user instead")
	}
	switch {
	case register && !f.has("url"):
		return b, fieldError("url", "is required")
	case f.has("url"):
		raw, err := f.str("url")
		if err != nil {
			return b, err
		}
		u, err := webhook.ValidateURL(raw)
		if err != nil {
			return b, err
		}
		b.URL = &u
	}
	if f.has("custom_headers") {
		if b.CustomHeaders, err = f.stringMap("custom_headers"); err != nil {
			return b, err
		}
		if err := webhook.ValidateHeaders(b.CustomHeaders); err != nil {
			return b, err
		}
	}
	if f.has("custom_payload") {
		if b.CustomPayload, err = f.object("custom_payload"); err != nil {
			return b, err
		}
		if err := webhook.ValidatePayload(b.CustomPayload); err != nil {
			return b, err
		}
	}
	if _, set := f["filter"]; set {
		b.SetFilter = true
		if f.has("filter") {
			if _, err := event.ParseFilter("filter", f["filter"]); err != nil {
				return b, err
			}
			if err := event.StorableJSON("filter", f["filter"]); err != nil {
				return b, err
			}
			b.Filter = f["filter"]
		}
	}
	if f.has("ordering") {
		o, err := f.str("ordering")
		if err != nil {
			return b, err
		}
		if o != webhook.OrderingNone && o != webhook.OrderingFIFO {
			return b, fieldError("ordering", `must be "none" or "fifo"`)
		}
		b.Limits.Ordering = o
	}
	for _, l := range b.limitFields() {
		if _, set := f[l.name]; !set {
			continue
		}
		*l.set = true
		if f.has(l.name) {
			n, err := f.intRange(l.name, l.lo, l.hi)
			if err != nil {
				return b, err
			}
			*l.to = &n
		}
	}
	switch {
	case register && f.has("enabled"):
		return b, fieldError("enabled", "cannot be set at registration: a webhook starts enabled")
	case f.has("enabled"):
		e, err := f.bool("enabled")
		if err != nil {
			return b, err
		}
		b.Enabled = &e
	}
	return b, nil
}

// checkEventTypes answers a 422 naming the body's event type field when an id matches no
// event type.
func (a *API) checkEventTypes(ctx context.Context, b webhookBody) error {
	if b.EventTypeIDs == nil {
		return nil
	}
	missing, err := store.MissingEventTypes(ctx, a.db, b.EventTypeIDs)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fieldError(b.typeField, "no event type with id "+missing[0].String())
	}
	return nil
}

func (a *API) registerWebhook(c *fiber.Ctx) error {
	f, err := a.jsonObject(c, webhookFields)
	if err != nil {
		return err
	}
	b, err := parseWebhook(f, true)
	if err != nil {
		return err
	}
	if err := a.publicTarget(b.URL); err != nil {
		return err
	}
	if err := forUser(c, b.UserID); err != nil {
		return err
	}
	ctx := c.UserContext()
	if err := a.checkEventTypes(ctx, b); err != nil {
		return err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	stored, err := a.opts.Sealer.Seal(secret) // encrypted at rest when a key is set
	if err != nil {
		return err
	}
	w, err := store.CreateWebhook(ctx, a.db, store.NewWebhook{UserID: b.UserID, URL: *b.URL, EventTypeIDs: b.EventTypeIDs,
		CustomHeaders: b.CustomHeaders, CustomPayload: b.CustomPayload, Filter: b.Filter, Limits: b.Limits, Secret: stored})
	if err != nil {
		return err
	}
	a.log.InfoContext(ctx, "webhook registered", "webhook_id", w.ID, "user_id", w.UserID)
	return ok(c, "Register Webhook Successfully!", registeredJSON{a.newWebhookJSON(w), string(secret)}) // shown once
}

func (a *API) patchWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	f, err := a.jsonObject(c, webhookFields)
	if err != nil {
		return err
	}
	b, err := parseWebhook(f, false)
	if err != nil {
		return err
	}
	if err := a.publicTarget(b.URL); err != nil {
		return err
	}
	if err := a.checkEventTypes(c.UserContext(), b); err != nil {
		return err
	}
	out, err := store.UpdateWebhook(c.UserContext(), a.db, w.ID, store.WebhookPatch{URL: b.URL, EventTypeIDs: b.EventTypeIDs,
		CustomHeaders: b.CustomHeaders, CustomPayload: b.CustomPayload, Enabled: b.Enabled, SetFilter: b.SetFilter, Filter: b.Filter,
		SetRateLimit: b.setRateLimit, SetMaxConcurrency: b.setMaxConcurrency, SetTimeout: b.setTimeout, Limits: b.Limits,
		Ordering: b.Limits.Ordering})
	if err != nil {
		return err
	}
	a.log.InfoContext(c.UserContext(), "webhook updated", "webhook_id", w.ID)
	return ok(c, "Webhook updated", a.newWebhookJSON(out))
}

// ownWebhook loads the path's webhook if the key may see it; webhook.ErrNotFound otherwise, so
// another tenant's webhook looks exactly like a missing one.
func (a *API) ownWebhook(c *fiber.Ctx, param string) (webhook.Webhook, error) {
	id, err := pathUUID(c, param, webhook.ErrNotFound)
	if err != nil {
		return webhook.Webhook{}, err
	}
	w, err := store.GetWebhook(c.UserContext(), a.db, id)
	if err == nil && !principal(c).may(w.UserID) {
		err = webhook.ErrNotFound
	}
	if errors.Is(err, webhook.ErrNotFound) {
		return webhook.Webhook{}, notFound(webhook.ErrNotFound, id.String())
	}
	return w, err
}

func (a *API) getWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	return ok(c, "ok", a.newWebhookJSON(w))
}

func (a *API) listWebhooks(c *fiber.Ctx) error {
	user := principal(c).UserID
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
	out := make([]webhookJSON, 0, len(pg.Items))
	for _, w := range pg.Items {
		out = append(out, a.newWebhookJSON(w))
	}
	return listed(c, out, pg.Next)
}

func (a *API) deleteWebhook(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	objects, err := store.DeleteWebhook(ctx, a.db, w.ID)
	if err != nil {
		return err // webhook.ErrNotFound when a concurrent delete came first
	}
	// The webhook's files go with it (retention: objects live until their webhook is deleted).
	for _, name := range objects {
		if err := a.blobs.Delete(ctx, name); err != nil {
			a.log.WarnContext(ctx, "delete file object", "webhook_id", w.ID, "object", name, "err", err)
		}
	}
	a.log.InfoContext(ctx, "webhook deleted", "webhook_id", w.ID, "files", len(objects))
	return ok(c, "Webhook deleted", idJSON{w.ID.String()})
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
	return ok(c, "Secret rotated", rotatedJSON{ID: w.ID, Secret: string(secret), PreviousSecretExpiresAt: apiTime(until)})
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
	return accepted(c, "Recovery queued", requeuedJSON{n})
}

// publicTarget refuses a URL whose host is an address literal egress would block (loopback,
// private, link-local, metadata and the other special ranges; IPv4-mapped and NAT64 forms
// too), unless HOOKLINE_ALLOW_PRIVATE_TARGETS is set: a registration that could never be
// delivered is a 422 now rather than a failed attempt later. The message does not say which
// range matched. Names are not resolved here (a name may point elsewhere at delivery time):
// the dispatcher's dial-time guard judges every address it connects to.
func (a *API) publicTarget(u *string) error {
	if u == nil || a.opts.AllowPrivateTargets {
		return nil
	}
	parsed, err := url.Parse(*u)
	if err != nil {
		return nil // ValidateURL has accepted it; nothing more to judge here
	}
	ip, err := netip.ParseAddr(parsed.Hostname())
	if err != nil || !egress.Blocked(ip) {
		return nil
	}
	return fieldError("url", "must not name a private, loopback or special-purpose address")
}
