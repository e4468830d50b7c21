// Package webhook owns the rules for a webhook registration and what a
// receiver gets: URL, custom header and custom payload checks, whsec_
// secrets, Standard Webhooks signatures and the rendered request body.
//
// It does no I/O: storing registrations is package store's job, sending
// requests is package egress's and dispatcher's. Of ours it imports only
// package event, whose FieldError it shares.
package webhook

import (
	"errors"

	"github.com/hookline/hookline/pkg/event"
)

// FieldError reports bad input: which field and what is wrong with it,
// worded for a person. It is event.FieldError, so every package's bad
// input is one type, which httpapi turns into a 422 with
// data {"field": Field, "problem": Problem}.
type FieldError = event.FieldError

// ErrSignature reports a webhook-signature header with no v1 signature that
// matches the secret. Verify returns it unwrapped.
var ErrSignature = errors.New("no matching webhook signature")

// ErrTimestamp reports a webhook-timestamp header that is malformed or too
// far from now. Verify wraps it with the detail; test with errors.Is.
var ErrTimestamp = errors.New("webhook timestamp out of tolerance")
