package httpapi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookline/hookline/pkg/blob"
	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Error is an answer other than 2xx that httpapi decides itself (a missing key, a refused
// user, a body too large): a status and a message for a person. Bad fields are
// *event.FieldError, and the sentinels of the packages below are mapped by sentinels.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func fail(status int, message string) *Error { return &Error{Status: status, Message: message} }

// fieldError is bad input in one field: a 422 with data {field, problem}. It is the same type
// package event and package webhook return, so the error handler knows one field error.
func fieldError(field, problem string) error {
	return &event.FieldError{Field: field, Problem: problem}
}

// sentinels maps what the packages below return for something missing or in conflict to its
// status. Handlers wrap them with what was missing ("webhook not found: <id>") and return
// them; the wrapped text is the answer's message, so it names only what the client sent.
var sentinels = []struct {
	err    error
	status int
}{
	{webhook.ErrNotFound, fiber.StatusNotFound},
	{store.ErrNoDelivery, fiber.StatusNotFound},
	{store.ErrNoFile, fiber.StatusNotFound},
	{store.ErrNoEventType, fiber.StatusNotFound},
	{store.ErrNoEvent, fiber.StatusNotFound},
	{blob.ErrNotFound, fiber.StatusNotFound},
	{store.ErrNoKey, fiber.StatusUnauthorized},
	{store.ErrDuplicate, fiber.StatusConflict},
	{store.ErrConflict, fiber.StatusConflict},
	{store.ErrUnavailable, fiber.StatusServiceUnavailable}, // and anything store.IsUnavailable
}

// problemJSON is the data of a 422: the field at fault and what is wrong with it.
type problemJSON struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// empty is the data {} of an answer that has nothing to say.
type empty struct{}

// answerFor is the one mapping from an error to a status, a message and the envelope's data,
// for a request of method on path; ok is false for an unexpected error, which the caller logs
// and answers 500 "internal error", never with its text.
func answerFor(err error, method, path string) (status int, message string, data any, ok bool) {
	var (
		e  *Error
		fe *event.FieldError
		fb *fiber.Error
	)
	switch {
	case errors.As(err, &e):
		return e.Status, e.Message, empty{}, true
	case errors.As(err, &fe):
		return fiber.StatusUnprocessableEntity, "invalid " + fe.Field + ": " + fe.Problem, problemJSON{fe.Field, fe.Problem}, true
	case errors.As(err, &fb):
		// Fiber's own: an unknown route, a method the path does not serve, a body over BodyLimit.
		message = fb.Message
		switch fb.Code {
		case fiber.StatusNotFound:
			message = "no such route: " + method + " " + path
		case fiber.StatusMethodNotAllowed:
			message = "method " + method + " not allowed on " + path
		case fiber.StatusRequestEntityTooLarge:
			message = "request body too large"
		}
		return fb.Code, message, empty{}, true
	}
	if store.IsUnavailable(err) {
		// PostgreSQL is away: the client may try again, unlike a 500.
		return fiber.StatusServiceUnavailable, store.ErrUnavailable.Error() + ", try again", empty{}, true
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.status, err.Error(), empty{}, true
		}
	}
	return fiber.StatusInternalServerError, "internal error", empty{}, false
}

// errorHandler is fiber.Config.ErrorHandler: every error of every route, Fiber's own 404, 405
// and 413 included, becomes the envelope with error: true through answerFor.
func (a *API) errorHandler(c *fiber.Ctx, err error) error {
	status, message, data, known := answerFor(err, c.Method(), c.Path())
	if !known {
		a.log.ErrorContext(c.UserContext(), "request failed", "method", c.Method(), "path", c.Path(), "err", err)
	}
	switch status {
	case fiber.StatusTooManyRequests:
		c.Set(fiber.HeaderRetryAfter, "1")
	case fiber.StatusServiceUnavailable:
		c.Set(fiber.HeaderRetryAfter, "5")
		if now := time.Now().UnixNano(); store.IsUnavailable(err) && now-a.unavailableLogged.Load() > int64(10*time.Second) {
			a.unavailableLogged.Store(now) // once per 10 s, not once per request
			a.log.WarnContext(c.UserContext(), "PostgreSQL unavailable, answering 503", "path", c.Path(), "err", err)
		}
	}
	return c.Status(status).JSON(envelope{Message: message, Data: data, Error: true})
}

// notFound wraps a "not found" sentinel with the id the client asked for ("webhook not found:
// <id>"). A path id can be anything: it is cut at 64 bytes.
func notFound(sentinel error, id string) error {
	if len(id) > 64 {
		id = strings.ToValidUTF8(id[:64], "") + "…"
	}
	return fmt.Errorf("%w: %s", sentinel, id)
}
