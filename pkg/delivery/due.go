package delivery

import (
	"time"

	"github.com/google/uuid"
)

// Due is one delivery attempt to send now: what a DELIVERIES message carries.
type Due struct {
	ID         uuid.UUID
	WebhookID  uuid.UUID
	EventType  string
	EventID    string // the event's id (per user), shown by the live tail
	UserID     int64  // the webhook's user: the live tail's subject
	Attempt    int    // the attempt this message is for, 1-based
	Payload    []byte
	OccurredAt time.Time // the event's time, for end-to-end latency
	// Key tells apart schedulings of the same attempt for deduplication: empty for the first
	// publish, the scheduled time for a retry, the claim time for a reconciled one.
	Key string
	// Seq is the event's stream sequence when the webhook delivers in FIFO order, else 0.
	Seq int64
}
