package httpapi

import (
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// This file holds the shapes of every JSON answer (DESIGN §10 and docs/openapi.yaml): one
// struct per object, so a field cannot be misspelt in one handler and right in another.

// envelope is the shape of every JSON answer; a page of a listing adds next_cursor while more
// remain.
type envelope struct {
	Message    string `json:"message"`
	Data       any    `json:"data"`
	Error      bool   `json:"error"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func ok(c *fiber.Ctx, message string, data any) error {
	return c.JSON(envelope{Message: message, Data: data})
}

// accepted is the 202 of work queued: a retry, a recovery.
func accepted(c *fiber.Ctx, message string, data any) error {
	return c.Status(fiber.StatusAccepted).JSON(envelope{Message: message, Data: data})
}

// listed answers a page, with next_cursor in the envelope when more remain.
func listed[T any](c *fiber.Ctx, items []T, next *store.Cursor) error {
	if items == nil {
		items = []T{} // [] rather than null
	}
	out := envelope{Message: "ok", Data: items}
	if next != nil {
		out.NextCursor = next.Encode()
	}
	return c.JSON(out)
}

// apiTime is a time as the API shows it: UTC, YYYY-MM-DD HH:MM:SS (the seed's format).
type apiTime time.Time

func (t apiTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(time.DateTime) + `"`), nil
}

// optionalTime is null for nil.
func optionalTime(t *time.Time) *apiTime {
	if t == nil {
		return nil
	}
	v := apiTime(*t)
	return &v
}

// eventTypeJSON is an event type; schema is null when it has none.
type eventTypeJSON struct {
	ID          uuid.UUID       `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
}

func newEventTypeJSON(t webhook.EventType) eventTypeJSON {
	out := eventTypeJSON{ID: t.ID, Name: t.Name, Description: t.Description, Schema: t.Schema}
	if out.Schema == nil {
		out.Schema = json.RawMessage("null")
	}
	return out
}

// storedEventJSON is an item of GET /events: an accepted event as stored.
type storedEventJSON struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	UserID     int64           `json:"user_id"`
	OccurredAt apiTime         `json:"occurred_at"`
	ReceivedAt apiTime         `json:"received_at"`
	Data       json.RawMessage `json:"data"`
}

func newStoredEventJSON(e store.StoredEvent) storedEventJSON {
	return storedEventJSON{ID: e.ID, Type: e.Type, UserID: e.UserID, OccurredAt: apiTime(e.OccurredAt),
		ReceivedAt: apiTime(e.ReceivedAt), Data: e.Data}
}

// eventDetailJSON is GET /events/{id}: the event and its deliveries, with their statuses.
type eventDetailJSON struct {
	storedEventJSON
	Deliveries []eventDeliveryJSON `json:"deliveries"`
}

type eventDeliveryJSON struct {
	ID        uuid.UUID `json:"id"`
	WebhookID uuid.UUID `json:"webhook_id"`
	Status    string    `json:"status"`
}

func newEventDetailJSON(e store.StoredEvent) eventDetailJSON {
	out := eventDetailJSON{storedEventJSON: newStoredEventJSON(e), Deliveries: make([]eventDeliveryJSON, 0, len(e.Deliveries))}
	for _, d := range e.Deliveries {
		out.Deliveries = append(out.Deliveries, eventDeliveryJSON{ID: d.ID, WebhookID: d.WebhookID, Status: d.Status})
	}
	return out
}

// webhookJSON is the webhook object; never the secret.
type webhookJSON struct {
	ID             uuid.UUID         `json:"id"`
	UserID         int64             `json:"user_id"`
	URL            string            `json:"url"`
	EventTypeIDs   []uuid.UUID       `json:"event_type_ids"`
	CustomHeaders  map[string]string `json:"custom_headers"`
	CustomPayload  map[string]any    `json:"custom_payload"`
	Filter         json.RawMessage   `json:"filter"`
	RateLimit      *int              `json:"rate_limit"`
	MaxConcurrency int               `json:"max_concurrency"`
	TimeoutMS      int               `json:"timeout_ms"`
	Ordering       string            `json:"ordering"`
	Enabled        bool              `json:"enabled"`
	DisabledReason *string           `json:"disabled_reason"`
	DisabledAt     *apiTime          `json:"disabled_at"`
	CreatedAt      apiTime           `json:"created_at"`
	UpdatedAt      apiTime           `json:"updated_at"`
}

// newWebhookJSON shows a webhook; a limit it did not set shows the service's default.
func (a *API) newWebhookJSON(w webhook.Webhook) webhookJSON {
	out := webhookJSON{ID: w.ID, UserID: w.UserID, URL: w.URL, EventTypeIDs: w.EventTypeIDs,
		CustomHeaders: w.CustomHeaders, CustomPayload: w.CustomPayload, Filter: w.Filter, Enabled: w.Enabled,
		DisabledAt: optionalTime(w.DisabledAt), CreatedAt: apiTime(w.CreatedAt), UpdatedAt: apiTime(w.UpdatedAt)}
	if out.EventTypeIDs == nil {
		out.EventTypeIDs = []uuid.UUID{}
	}
	if out.CustomHeaders == nil {
		out.CustomHeaders = map[string]string{}
	}
	if out.CustomPayload == nil {
		out.CustomPayload = map[string]any{}
	}
	out.RateLimit, out.MaxConcurrency, out.TimeoutMS = w.Limits.RateLimit, a.opts.EndpointConcurrency, int(a.opts.ReceiverTimeout.Milliseconds())
	out.Ordering = w.Limits.Ordering
	if out.Ordering == "" {
		out.Ordering = webhook.OrderingNone
	}
	if w.Limits.MaxConcurrency != nil {
		out.MaxConcurrency = *w.Limits.MaxConcurrency
	}
	if w.Limits.TimeoutMS != nil {
		out.TimeoutMS = *w.Limits.TimeoutMS
	}
	if out.Filter == nil {
		out.Filter = json.RawMessage("null")
	}
	if w.DisabledReason != "" {
		out.DisabledReason = &w.DisabledReason
	}
	return out
}

// registeredJSON is a webhook as registration answers it: the only time the secret is shown,
// besides a rotation.
type registeredJSON struct {
	webhookJSON
	Secret string `json:"secret"`
}

type rotatedJSON struct {
	ID                      uuid.UUID `json:"id"`
	Secret                  string    `json:"secret"`
	PreviousSecretExpiresAt apiTime   `json:"previous_secret_expires_at"`
}

// idJSON answers a deletion and a queued retry (an accepted event: acceptedEventJSON).
type idJSON struct {
	ID string `json:"id"`
}

type requeuedJSON struct {
	Requeued int64 `json:"requeued"`
}

type deliveryJSON struct {
	ID             uuid.UUID `json:"id"`
	WebhookID      uuid.UUID `json:"webhook_id"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	Status         string    `json:"status"`
	AttemptCount   int       `json:"attempt_count"`
	NextAttemptAt  *apiTime  `json:"next_attempt_at"`
	LastStatusCode *int      `json:"last_status_code"`
	CreatedAt      apiTime   `json:"created_at"`
	UpdatedAt      apiTime   `json:"updated_at"`
}

func newDeliveryJSON(d store.Delivery) deliveryJSON {
	return deliveryJSON{ID: d.ID, WebhookID: d.WebhookID, EventID: d.EventID, EventType: d.EventType,
		Status: string(d.Status), AttemptCount: d.AttemptCount, NextAttemptAt: optionalTime(d.NextAttemptAt),
		LastStatusCode: d.LastStatusCode, CreatedAt: apiTime(d.CreatedAt), UpdatedAt: apiTime(d.UpdatedAt)}
}

// deliveryDetailJSON is GET /deliveries/{id}: the delivery and its attempts, oldest first.
type deliveryDetailJSON struct {
	deliveryJSON
	Attempts []attemptJSON `json:"attempts"`
}

type attemptJSON struct {
	Attempt         int     `json:"attempt"`
	StatusCode      *int    `json:"status_code"`
	Error           *string `json:"error"`
	LatencyMS       float64 `json:"latency_ms"`
	ResponseExcerpt string  `json:"response_excerpt"`
	CreatedAt       apiTime `json:"created_at"`
}

func newDeliveryDetailJSON(d store.Delivery) deliveryDetailJSON {
	out := deliveryDetailJSON{deliveryJSON: newDeliveryJSON(d), Attempts: make([]attemptJSON, 0, len(d.Attempts))}
	for _, at := range d.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON{Attempt: at.Attempt, StatusCode: at.StatusCode, Error: at.Error,
			LatencyMS: at.LatencyMS, ResponseExcerpt: at.ResponseExcerpt, CreatedAt: apiTime(at.CreatedAt)})
	}
	return out
}

// fileJSON is GET /files/{id}: the file's metadata.
type fileJSON struct {
	FileID      uuid.UUID `json:"file_id"`
	WebhookID   uuid.UUID `json:"webhook_id"`
	FileName    string    `json:"file_name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	UploadedAt  apiTime   `json:"uploaded_at"`
}

func newFileJSON(f store.File) fileJSON {
	return fileJSON{FileID: f.ID, WebhookID: f.WebhookID, FileName: f.FileName, Size: f.Size,
		ContentType: f.ContentType, SHA256: f.SHA256, UploadedAt: apiTime(f.UploadedAt)}
}

// rejectedJSON is an item of GET /events/rejected; id is null when the event had none.
type rejectedJSON struct {
	ID         *string `json:"id"`
	Subject    string  `json:"subject"`
	Reason     string  `json:"reason"`
	Payload    string  `json:"payload"`
	ReceivedAt apiTime `json:"received_at"`
}

func newRejectedJSON(r store.Rejected) rejectedJSON {
	return rejectedJSON{ID: r.EventID, Subject: r.Subject, Reason: r.Reason, Payload: string(r.Payload), ReceivedAt: apiTime(r.ReceivedAt)}
}
