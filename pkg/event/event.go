// Package event owns the event envelope: what other services publish on
// events.<type> and what POST /events accepts, how it is decoded and
// validated, and how event types map to NATS subjects.
//
// It does no I/O: whether the type exists or the user is known is checked
// by the processor against PostgreSQL.
package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Event is what other services publish on events.<type> and what
// POST /events accepts. Decode fills it from a message and Encode writes it.
type Event struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	UserID     int64           `json:"user_id"`
	WebhookID  *uuid.UUID      `json:"webhook_id,omitempty"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// SubjectPrefix starts every event subject: an event of type
// "upload.completed" is published on "events.upload.completed".
const SubjectPrefix = "events."

// Limits of ValidTypeName and ValidID.
const (
	MaxTypeNameLen = 100
	MaxIDLen       = 128
)

// Subject returns the NATS subject for events of eventType. It does not
// check the name: see ValidTypeName.
func Subject(eventType string) string { return SubjectPrefix + eventType }

// TypeFromSubject returns the event type of an events.<type> subject, and
// false when subject lacks the prefix or the type is empty. It does not
// check the name: see ValidTypeName.
func TypeFromSubject(subject string) (string, bool) {
	typ, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok || typ == "" {
		return "", false
	}
	return typ, true
}

// ValidTypeName reports whether name can be an event type name: at most
// 100 characters matching ^[a-z0-9_-]+(\.[a-z0-9_-]+)*$, so it is a valid
// NATS subject suffix with no wildcard.
func ValidTypeName(name string) bool {
	if name == "" || len(name) > MaxTypeNameLen {
		return false
	}
	prevDot := true // no leading dot
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if prevDot {
				return false // leading or doubled dot
			}
			prevDot = true
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
			prevDot = false
		default:
			return false
		}
	}
	return !prevDot // no trailing dot
}

// ValidID reports whether id can be an event id: 1 to 128 characters of
// [A-Za-z0-9._:-]. Ids need not be UUIDs, so publishers can reuse their
// own; they become Nats-Msg-Id values and database keys.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// MsgID is the Nats-Msg-Id the ingress publishes an event of userID with id under:
// "<user_id>:<id>". Event ids are per user, and JetStream drops a second message with the same
// Nats-Msg-Id inside the stream's duplicate window whoever sent it: with the user in it, two
// users' events with one id are two messages, while a user's retry is still dropped.
func MsgID(userID int64, id string) string { return strconv.FormatInt(userID, 10) + ":" + id }

// FieldError reports a bad event: which field (a body field such as
// "user_id", or "body" or "subject") and what is wrong with it, worded for
// a person. POST /events answers it with a 422.
type FieldError struct {
	Field   string
	Problem string
}

// Error returns "<field>: <problem>".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// FieldProblem returns the field and the problem, so callers can recognise
// field errors of several packages through one small interface.
func (e *FieldError) FieldProblem() (field, problem string) { return e.Field, e.Problem }
