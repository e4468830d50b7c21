package delivery

import (
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/event"
)

// Record is one committed attempt as the live tail shows it (GET /attempts/stream): the
// dispatcher publishes it on a core NATS subject once the attempt's row is committed, and the
// ingress forwards the bytes of AppendJSON as they are. It is this wire format's one home:
// the encoder is hand-written (one per attempt on the dispatcher's hot path, no reflection)
// and the json tags decode it (tests, the CLI).
type Record struct {
	DeliveryID uuid.UUID `json:"delivery_id"`
	WebhookID  uuid.UUID `json:"webhook_id"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	Attempt    int       `json:"attempt"`
	Status     Status    `json:"status"`      // the delivery's status after this attempt
	StatusCode int       `json:"status_code"` // null (0) when no answer came
	LatencyMS  float64   `json:"latency_ms"`
	Error      string    `json:"error"` // null ("") unless the attempt failed without a status
	At         string    `json:"at"`    // UTC, YYYY-MM-DD HH:MM:SS (the API's timestamps)
}

// RecordTime is the format of Record.At.
const RecordTime = "2006-01-02 15:04:05"

// AppendRecord appends r's JSON object to b, with At formatted from at and LatencyMS from
// latency (r's own At and LatencyMS are ignored). It allocates nothing beyond growing b, unless
// a string needs escaping.
func AppendRecord(b []byte, r *Record, latency time.Duration, at time.Time) []byte {
	b = append(b, `{"delivery_id":"`...)
	b = event.AppendUUID(b, r.DeliveryID)
	b = append(b, `","webhook_id":"`...)
	b = event.AppendUUID(b, r.WebhookID)
	b = append(b, `","event_id":`...)
	b = event.AppendJSONString(b, r.EventID)
	b = append(b, `,"event_type":`...)
	b = event.AppendJSONString(b, r.EventType)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	b = append(b, `,"status":`...)
	b = event.AppendJSONString(b, string(r.Status))
	b = append(b, `,"status_code":`...)
	if r.StatusCode == 0 {
		b = append(b, "null"...) // no answer came, as GET /deliveries/{id} shows it
	} else {
		b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	}
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, float64(latency.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"error":`...)
	if r.Error == "" {
		b = append(b, "null"...)
	} else {
		b = event.AppendJSONString(b, r.Error)
	}
	b = append(b, `,"at":"`...)
	b = at.UTC().AppendFormat(b, RecordTime)
	return append(b, `"}`...)
}
