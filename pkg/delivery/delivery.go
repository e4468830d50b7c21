// Package delivery owns the life of one delivery of an event to a webhook:
// its states, the retry schedule with jitter, and how a receiver's
// Retry-After stretches the next wait.
//
// It does no I/O: rows live in package store, attempts are made by the
// dispatcher.
package delivery

// Status is where a delivery stands. A delivery starts pending, is
// retrying after a failed attempt with attempts left, and ends succeeded
// (a 2xx) or failed (no attempts left, or a 410 Gone).
type Status string

// The statuses, as stored and as shown by the API.
const (
	StatusPending   Status = "pending"
	StatusRetrying  Status = "retrying"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)
