// Package webhook owns the rules for a webhook registration and what a
// receiver gets: URL, custom header and custom payload checks, whsec_
// secrets, Standard Webhooks signatures and the rendered request body.
//
// It does no I/O: storing registrations is package store's job, sending
// requests is package egress's and dispatcher's.
package webhook

import "errors"

// FieldError reports bad input: which field and what is wrong with it,
// worded for a person. httpapi turns it into a 422 with
// data {"field": Field, "problem": Problem}.
type FieldError struct {
	Field   string
	Problem string
}

// Error returns "<field>: <problem>".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// FieldProblem returns the field and the problem, so callers can recognise
// field errors of several packages through one small interface.
func (e *FieldError) FieldProblem() (field, problem string) { return e.Field, e.Problem }

// ErrSignature reports a webhook-signature header with no v1 signature that
// matches the secret. Verify returns it unwrapped.
var ErrSignature = errors.New("no matching webhook signature")

// ErrTimestamp reports a webhook-timestamp header that is malformed or too
// far from now. Verify wraps it with the detail; test with errors.Is.
var ErrTimestamp = errors.New("webhook timestamp out of tolerance")
