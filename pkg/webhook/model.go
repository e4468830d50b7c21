package webhook

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Webhook is one registration: where to send which event types, and how.
type Webhook struct {
	ID             uuid.UUID
	UserID         int64
	URL            string
	EventTypeIDs   []uuid.UUID
	CustomHeaders  map[string]string
	CustomPayload  map[string]any
	Filter         json.RawMessage // payload filter (event.ParseFilter); nil for none
	Limits         Limits
	Enabled        bool
	DisabledReason string
	DisabledAt     *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Limits are a webhook's own delivery settings; nil means the service's default.
type Limits struct {
	RateLimit      *int // deliveries per second, 1–100,000; nil: none
	MaxConcurrency *int // requests in flight, 1–1,024
	TimeoutMS      *int // one attempt, 100–60,000 ms
	// Ordering is "fifo" (deliveries attempted strictly in event order, one at a time) or
	// "none" (the default; "" reads as none).
	Ordering string
}

// Ordering values.
const (
	OrderingNone = "none"
	OrderingFIFO = "fifo"
)

// EventType is a kind of event webhooks subscribe to; its name is the subject suffix. Schema
// is a JSON Schema for its events' data, nil for none.
type EventType struct {
	ID          uuid.UUID
	Name        string
	Description string
	Schema      json.RawMessage
}

// ErrNotFound reports a webhook id that matches no live registration. Callers test with
// errors.Is.
var ErrNotFound = errors.New("webhook not found")
