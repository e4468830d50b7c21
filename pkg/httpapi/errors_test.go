package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookline/hookline/pkg/blob"
	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Every error a handler can return gets its status from the one error handler: each sentinel
// of the packages below (wrapped with what was missing, as handlers return them), field errors
// of every package, httpapi's own, Fiber's; anything else is a 500 that does not show its text.
func TestErrorHandlerMapsEveryError(t *testing.T) {
	id := uuid.NewString()
	cases := []struct {
		err     error
		status  int
		message string
		field   string
	}{
		{notFound(webhook.ErrNotFound, id), 404, "webhook not found: " + id, ""},
		{notFound(store.ErrNoDelivery, id), 404, "delivery not found: " + id, ""},
		{notFound(store.ErrNoFile, "not-a-uuid"), 404, "file not found: not-a-uuid", ""},
		{notFound(store.ErrNoEventType, id), 404, "event type not found: " + id, ""},
		{notFound(store.ErrNoEvent, "evt_1"), 404, "event not found: evt_1", ""},
		{fmt.Errorf("file %s: %w", id, blob.ErrNotFound), 404, "file " + id + ": object not found", ""},
		{store.ErrNoKey, 401, "unknown or revoked api key", ""},
		{fmt.Errorf("event type %q: %w", "a.b", store.ErrDuplicate), 409, `event type "a.b": already exists`, ""},
		{fmt.Errorf("%w: only a failed delivery can be retried; this one is pending", store.ErrConflict), 409,
			"state conflict: only a failed delivery can be retried; this one is pending", ""},
		{&webhook.FieldError{Field: "url", Problem: "is required"}, 422, "invalid url: is required", "url"},
		{fmt.Errorf("decode: %w", &event.FieldError{Field: "user_id", Problem: "must be a positive integer"}), 422,
			"invalid user_id: must be a positive integer", "user_id"},
		{fieldError("limit", "must be an integer from 1 to 100"), 422, "invalid limit: must be an integer from 1 to 100", "limit"},
		{fail(403, "this route needs an admin key"), 403, "this route needs an admin key", ""},
		{fiber.ErrNotFound, 404, "no such route: GET /x", ""},
		{fiber.ErrMethodNotAllowed, 405, "method GET not allowed on /x", ""},
		{fiber.ErrRequestEntityTooLarge, 413, "request body too large", ""},
		{errors.New("dial tcp 10.0.0.1:5432: secret detail"), 500, "internal error", ""},
		// PostgreSQL away: 503 with Retry-After, the cause not shown.
		{fmt.Errorf("load webhook: %w", &pgconn.ConnectError{}), 503, "the database is unavailable, try again", ""},
		{fmt.Errorf("list: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection"}), 503, "the database is unavailable, try again", ""},
		{fmt.Errorf("list: %w", store.ErrUnavailable), 503, "the database is unavailable, try again", ""},
	}
	mapped := map[error]bool{}
	for _, c := range cases {
		for _, s := range sentinels {
			if errors.Is(c.err, s.err) {
				mapped[s.err] = true
			}
		}
	}
	for _, s := range sentinels {
		if !mapped[s.err] {
			t.Errorf("sentinel %v has no case here", s.err)
		}
	}

	var next error
	app := fiber.New(fiber.Config{ErrorHandler: (&API{log: discardLog()}).errorHandler})
	app.Get("/x", func(*fiber.Ctx) error { return next })
	for _, c := range cases {
		next = c.err
		resp, err := app.Test(httptestRequest(http.MethodGet, "/x"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		var env struct {
			Message string
			Data    map[string]string
			Error   bool
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("%v: answer is not the envelope: %s", c.err, raw)
		}
		if resp.StatusCode != c.status || env.Message != c.message || !env.Error || env.Data["field"] != c.field {
			t.Errorf("error %q = %d %s, want %d, message %q, field %q", c.err, resp.StatusCode, raw, c.status, c.message, c.field)
		}
		if c.status == 503 && resp.Header.Get("Retry-After") != "5" {
			t.Errorf("error %q: 503 without Retry-After: 5 (%v)", c.err, resp.Header)
		}
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
