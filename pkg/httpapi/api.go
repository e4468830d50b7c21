// Package httpapi is the ingress REST API on Fiber: routes, the {"message","data","error"}
// envelope, and the one mapping from errors to statuses. Registrations and reads go to
// PostgreSQL; an upload stores its bytes in the blob store and publishes upload.completed; an
// answer of 200 to an upload or an event means JetStream acknowledged the publish.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hookline/hookline/pkg/blob"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Options of the API.
type Options struct {
	MaxUploadBytes int64  // HOOKLINE_MAX_UPLOAD_BYTES
	MaxBodyBytes   int64  // HOOKLINE_MAX_BODY_BYTES, every other request body
	AdminKey       string // HOOKLINE_ADMIN_API_KEY (or the all-in-one's generated one)
	RateLimit      int    // requests per second per non-admin key; 0 = off
	Sealer         *webhook.Sealer
	Links          *Links    // signs download URLs
	AccessLog      io.Writer // HOOKLINE_LOG_DIR/access.log, one JSON line per request; nil = none
}

// API serves the REST API.
type API struct {
	db    *store.DB
	js    jetstream.JetStream
	blobs blob.Store
	m     *metrics.Set
	log   *slog.Logger
	opts  Options
	app   *fiber.App
	keys  keyCache

	limitMu sync.Mutex
	limits  map[string]*rate.Limiter
}

// New builds the API and its routes.
func New(db *store.DB, js jetstream.JetStream, blobs blob.Store, m *metrics.Set, log *slog.Logger, o Options) *API {
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = 32 << 20
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Links == nil {
		o.Links = NewLinks([]byte(o.AdminKey), "http://127.0.0.1:8081", 0)
	}
	a := &API{db: db, js: js, blobs: blobs, m: m, log: log.With("component", "ingress"), opts: o,
		keys: keyCache{m: map[string]cachedKey{}}, limits: map[string]*rate.Limiter{}}
	a.app = fiber.New(fiber.Config{
		// BodyLimit is app-wide: it must admit the largest upload plus multipart framing;
		// other routes check their bodies against MaxBodyBytes themselves.
		BodyLimit:             int(o.MaxUploadBytes) + 1<<20,
		DisableStartupMessage: true,
		ErrorHandler:          a.errorHandler,
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           120 * time.Second,
	})
	a.routes()
	return a
}

// App exposes the Fiber app, for tests (app.Test, app.GetRoutes).
func (a *API) App() *fiber.App { return a.app }

func (a *API) routes() {
	app := a.app
	app.Use(RequestID())
	if a.opts.AccessLog != nil {
		app.Use(AccessLog(a.opts.AccessLog))
	}
	app.Use(a.observe)
	// Open to all: probes, metrics, and file content through a signed link.
	app.Get("/healthz", func(c *fiber.Ctx) error { return ok(c, "ok", fiber.Map{}) })
	app.Get("/readyz", a.ready)
	app.Get("/metrics", adaptor.HTTPHandler(a.m.Handler()))
	app.Get("/files/:id/content", a.fileContent)

	app.Use(a.authenticate) // every route below needs a key
	app.Get("/event_type", a.listEventTypes)
	app.Post("/event_type", adminOnly, a.createEventType)

	app.Post("/webhook/register", a.registerWebhook)
	app.Get("/webhooks", a.listWebhooks)
	app.Get("/webhook/:id", a.getWebhook)
	app.Patch("/webhook/:id", a.patchWebhook)
	app.Delete("/webhook/:id", a.deleteWebhook)
	app.Post("/webhook/:id/rotate-secret", a.rotateSecret)
	app.Get("/webhook/:id/deliveries", a.listDeliveries)
	app.Post("/webhook/:id/recover", a.recoverWebhook)

	app.Get("/deliveries/:id", a.getDelivery)
	app.Post("/deliveries/:id/retry", a.retryDelivery)

	app.Post("/upload_file/webhook_id/:webhook_id", a.upload)
	app.Get("/files/:id", a.getFile)

	app.Post("/events", a.publishEvent)
	app.Get("/events/rejected", adminOnly, a.listRejected)
}

// Run serves on addr until ctx ends, then shuts down gracefully.
func (a *API) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests use port 0).
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- a.app.Listener(ln) }()
	a.log.Info("ingress listening", "addr", ln.Addr().String())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.app.ShutdownWithContext(shut); err != nil {
		return err
	}
	return <-done
}

func (a *API) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 3*time.Second)
	defer cancel()
	if err := a.db.PingContext(ctx); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(envelope{Message: "database unreachable", Data: fiber.Map{}, Error: true})
	}
	if err := natsx.Ready(ctx, a.js); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(envelope{Message: "nats unreachable", Data: fiber.Map{}, Error: true})
	}
	return ok(c, "ready", fiber.Map{})
}

// observe counts every request by its route pattern (never the raw path, which would make a
// series per id).
func (a *API) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		// Let the error handler write the status first, so it is the one counted.
		if herr := a.errorHandler(c, err); herr != nil {
			return herr
		}
	}
	route := c.Route().Path
	if route == "/" && c.Path() != "/" || route == "" {
		route = "unmatched"
	}
	method := string(c.Request().Header.Method())
	a.m.HTTPRequests.WithLabelValues(route, method, strconv.Itoa(c.Response().StatusCode())).Inc()
	a.m.HTTPDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	return nil
}

// envelope is the shape of every JSON answer.
type envelope struct {
	Message string `json:"message"`
	Data    any    `json:"data"`
	Error   bool   `json:"error"`
}

func ok(c *fiber.Ctx, message string, data any) error {
	return c.JSON(envelope{Message: message, Data: data})
}

// Error is an answer other than 200: a status, a message for a person, and optionally the
// field at fault.
type Error struct {
	Status  int
	Message string
	Field   string
	Problem string
}

func (e *Error) Error() string { return e.Message }

func fail(status int, message string) *Error { return &Error{Status: status, Message: message} }

// fieldError is a 422 naming a field.
func fieldError(field, problem string) *Error {
	return &Error{Status: fiber.StatusUnprocessableEntity, Message: "invalid " + field + ": " + problem, Field: field, Problem: problem}
}

// fieldProblem is the field error of any of our packages (webhook, event).
type fieldProblem interface{ FieldProblem() (string, string) }

// errorHandler is the one place that turns an error into a status and the envelope; Fiber's
// own errors (unknown route, 405, body too large) come through it too. An unexpected error is
// logged and answered "internal error", never with its text.
func (a *API) errorHandler(c *fiber.Ctx, err error) error {
	var (
		e  *Error
		fe *fiber.Error
		fp fieldProblem
	)
	switch {
	case errors.As(err, &e):
	case errors.As(err, &fp):
		f, p := fp.FieldProblem()
		e = fieldError(f, p)
	case errors.As(err, &fe):
		e = &Error{Status: fe.Code, Message: fe.Message}
		switch fe.Code {
		case fiber.StatusNotFound:
			e.Message = "no such route: " + c.Method() + " " + c.Path()
		case fiber.StatusMethodNotAllowed:
			e.Message = "method " + c.Method() + " not allowed on " + c.Path()
		case fiber.StatusRequestEntityTooLarge:
			e.Message = "request body too large"
		}
	default:
		a.log.ErrorContext(c.UserContext(), "request failed", "method", c.Method(), "path", c.Path(), "err", err)
		e = fail(fiber.StatusInternalServerError, "internal error")
	}
	data := fiber.Map{}
	if e.Field != "" {
		data = fiber.Map{"field": e.Field, "problem": e.Problem}
	}
	if e.Status == fiber.StatusTooManyRequests {
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	return c.Status(e.Status).JSON(envelope{Message: e.Message, Data: data, Error: true})
}

// timestamp formats times the seed's way: UTC, YYYY-MM-DD HH:MM:SS.
func timestamp(t time.Time) string { return t.UTC().Format(time.DateTime) }

func itoa(n int) string { return strconv.Itoa(n) }
