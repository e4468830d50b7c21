package natsx

import "strconv"

// The live tail's subjects (core NATS, no stream captures them): the dispatcher publishes
// each committed attempt on hookline.attempts.<user_id>.<webhook_id> with a delivery.Record as
// the body, and each GET /attempts/stream subscribes as narrowly as its key and filter allow.
// Nothing is kept: a tail sees attempts committed while it is connected.
const (
	AttemptsPrefix = "hookline.attempts."
	AttemptsAll    = AttemptsPrefix + ">"
)

// AppendAttemptSubject appends the subject of an attempt of webhookID (user's) to b.
func AppendAttemptSubject(b []byte, user int64, webhookID string) []byte {
	b = append(b, AttemptsPrefix...)
	b = strconv.AppendInt(b, user, 10)
	b = append(b, '.')
	return append(b, webhookID...)
}

// AttemptsSubject is the subject a tail subscribes to: one user's attempts (webhookID ""),
// one webhook's (user 0: any user, as an admin filtering by webhook does not need to know
// the owner), or every attempt (user 0, webhookID "").
func AttemptsSubject(user int64, webhookID string) string {
	u, w := "*", "*"
	if user > 0 {
		u = strconv.FormatInt(user, 10)
	}
	if webhookID != "" {
		w = webhookID
	}
	if u == "*" && w == "*" {
		return AttemptsAll
	}
	return AttemptsPrefix + u + "." + w
}
