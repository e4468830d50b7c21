package event

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// wireEvent is an event body as received: every field raw, so one
// json.Unmarshal does the parsing and Decode can tell "absent" from
// "wrong type" and word each problem for the field it is about.
type wireEvent struct {
	ID         json.RawMessage `json:"id"`
	Type       json.RawMessage `json:"type"`
	UserID     json.RawMessage `json:"user_id"`
	WebhookID  json.RawMessage `json:"webhook_id"`
	OccurredAt json.RawMessage `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// Decode parses and validates an event body received on subject (such as
// "events.upload.completed") with Nats-Msg-Id header value msgID (may be
// "") at receipt time now. POST /events, which has no subject, passes ""
// and the body must then name the type.
//
// The body must be a JSON object; unknown fields are ignored. id comes from
// the body, else msgID, else a new UUID, and must pass ValidID. type, when
// present, must equal the subject's suffix, from which it is taken when
// absent, and must pass ValidTypeName. user_id is a required positive
// integer (not 1.5, "1" or 1e3). webhook_id is optional, a UUID.
// occurred_at is optional, RFC3339 (default now); it is returned in UTC.
// data is a required JSON object. A field that is null or an id or type
// that is "" counts as absent. Data is a copy: body may be reused.
//
// Every error is a *FieldError naming the field: a body field, or "body"
// or "subject". Decode does not know which types and users exist.
func Decode(subject string, msgID string, body []byte, now time.Time) (Event, error) {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, &FieldError{Field: "body", Problem: "must be a JSON object"}
	}
	var w wireEvent
	if err := json.Unmarshal(body, &w); err != nil {
		// Every field is raw, so only a syntax error can get here.
		return Event{}, &FieldError{Field: "body", Problem: "is not valid JSON: " + err.Error()}
	}
	var (
		e   Event
		err error
	)
	if e.ID, err = decodeID(w.ID, msgID); err != nil {
		return Event{}, err
	}
	if e.Type, err = decodeType(w.Type, subject); err != nil {
		return Event{}, err
	}
	if e.UserID, err = decodeUserID(w.UserID); err != nil {
		return Event{}, err
	}
	if e.WebhookID, err = decodeWebhookID(w.WebhookID); err != nil {
		return Event{}, err
	}
	if e.OccurredAt, err = decodeOccurredAt(w.OccurredAt, now); err != nil {
		return Event{}, err
	}
	if isAbsent(w.Data) {
		return Event{}, &FieldError{Field: "data", Problem: "is required"}
	}
	if w.Data[0] != '{' {
		return Event{}, &FieldError{Field: "data", Problem: "must be a JSON object"}
	}
	if err := checkStorable("data", w.Data); err != nil {
		return Event{}, err
	}
	e.Data = w.Data // json.Unmarshal copied it out of body
	return e, nil
}

func decodeID(raw json.RawMessage, msgID string) (string, error) {
	id, err := decodeString(raw, "id")
	if err != nil {
		return "", err
	}
	switch {
	case id != "":
		if !ValidID(id) {
			return "", &FieldError{Field: "id", Problem: fmt.Sprintf("%.40q must be 1 to 128 characters of A-Z, a-z, 0-9 and . _ : -", id)}
		}
	case msgID != "":
		if !ValidID(msgID) {
			return "", &FieldError{Field: "id", Problem: fmt.Sprintf("is absent and the Nats-Msg-Id %.40q is not 1 to 128 characters of A-Z, a-z, 0-9 and . _ : -", msgID)}
		}
		id = msgID
	default:
		id = uuid.NewString()
	}
	return id, nil
}

func decodeType(raw json.RawMessage, subject string) (string, error) {
	subjectType := ""
	if subject != "" {
		var ok bool
		if subjectType, ok = TypeFromSubject(subject); !ok {
			return "", &FieldError{Field: "subject", Problem: fmt.Sprintf("%.120q is not %s<type>", subject, SubjectPrefix)}
		}
	}
	typ, err := decodeString(raw, "type")
	switch {
	case err != nil:
		return "", err
	case typ == "" && subject == "":
		return "", &FieldError{Field: "type", Problem: "is required"}
	case typ == "":
		typ = subjectType
	case subject != "" && typ != subjectType:
		return "", &FieldError{Field: "type", Problem: fmt.Sprintf("%.120q does not match subject %.120q", typ, subject)}
	}
	if !ValidTypeName(typ) {
		return "", &FieldError{Field: "type", Problem: fmt.Sprintf("%.120q must be at most 100 characters of dot-separated a-z, 0-9, _ and -", typ)}
	}
	return typ, nil
}

func decodeUserID(raw json.RawMessage) (int64, error) {
	if isAbsent(raw) {
		return 0, &FieldError{Field: "user_id", Problem: "is required"}
	}
	// Parse the JSON number text ourselves: float64 would accept 1.5 and
	// 1e3 and lose precision above 2^53.
	var n int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, &FieldError{Field: "user_id", Problem: "must be a positive integer"}
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, &FieldError{Field: "user_id", Problem: "must be a positive integer below 2^63"}
		}
		n = n*10 + d
	}
	if n == 0 {
		return 0, &FieldError{Field: "user_id", Problem: "must be a positive integer"}
	}
	return n, nil
}

func decodeWebhookID(raw json.RawMessage) (*uuid.UUID, error) {
	if isAbsent(raw) {
		return nil, nil
	}
	s, err := decodeString(raw, "webhook_id")
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return nil, &FieldError{Field: "webhook_id", Problem: fmt.Sprintf("%.60q is not a UUID", s)}
	}
	return &id, nil
}

func decodeOccurredAt(raw json.RawMessage, now time.Time) (time.Time, error) {
	if isAbsent(raw) {
		return now.UTC(), nil
	}
	s, err := decodeString(raw, "occurred_at")
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &FieldError{Field: "occurred_at", Problem: fmt.Sprintf("%.60q is not an RFC3339 time such as 2026-11-28T12:00:00Z", s)}
	}
	// Years outside 1–9999 (in UTC) cannot be written back as RFC3339.
	if t = t.UTC(); t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, &FieldError{Field: "occurred_at", Problem: fmt.Sprintf("%.60q is outside years 0001 to 9999", s)}
	}
	return t, nil
}

// isAbsent reports whether a field was missing or null.
func isAbsent(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// decodeString returns the string in raw, "" when absent or null, and a
// *FieldError for field when raw is another JSON type.
func decodeString(raw json.RawMessage, field string) (string, error) {
	if isAbsent(raw) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", &FieldError{Field: field, Problem: "must be a string"}
	}
	// Fast path: no escapes, so the text between the quotes is the string.
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Field: field, Problem: "must be a string"}
	}
	return s, nil
}

// Encode returns e as a JSON body for publishing on Subject(e.Type), with
// occurred_at in RFC3339Nano (UTC) and data exactly as given. It does not
// validate e (Decode does, on the other side); it returns an error only
// when e.Data is not valid JSON or OccurredAt is outside years 0001–9999.
func Encode(e Event) ([]byte, error) {
	data := bytes.TrimSpace(e.Data)
	if !json.Valid(data) {
		return nil, fmt.Errorf("encode event %.40q: data is not valid JSON", e.ID)
	}
	at := e.OccurredAt.UTC()
	if y := at.Year(); y < 1 || y > 9999 {
		return nil, errors.New("encode event: occurred_at is outside years 0001 to 9999")
	}
	b := make([]byte, 0, 160+len(e.ID)+len(e.Type)+len(data))
	b = append(b, `{"id":`...)
	b = AppendJSONString(b, e.ID)
	b = append(b, `,"type":`...)
	b = AppendJSONString(b, e.Type)
	b = append(b, `,"user_id":`...)
	b = strconv.AppendInt(b, e.UserID, 10)
	if e.WebhookID != nil {
		b = append(b, `,"webhook_id":"`...)
		b = AppendUUID(b, *e.WebhookID)
		b = append(b, '"')
	}
	b = append(b, `,"occurred_at":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}'), nil
}

// AppendJSONString appends s as a JSON string. Valid ids and type names
// are plain ASCII and are copied as they are; anything else goes through
// encoding/json, which escapes it.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendUUID appends u in its canonical 36-character form without the
// allocation of u.String().
func AppendUUID(b []byte, u uuid.UUID) []byte {
	b = hex.AppendEncode(b, u[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[8:10])
	b = append(b, '-')
	return hex.AppendEncode(b, u[10:16])
}

// PeekID returns the id an event that failed Decode would have had, for its rejection record:
// the body's id when it is valid, else the Nats-Msg-Id when valid, else "".
func PeekID(body []byte, msgID string) string {
	var w struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &w) == nil {
		if id, err := decodeString(w.ID, "id"); err == nil && ValidID(id) {
			return id
		}
	}
	if ValidID(msgID) {
		return msgID
	}
	return ""
}
