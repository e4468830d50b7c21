// Package httpapi is the ingress REST API on Fiber: routes, the {"message","data","error"}
// envelope, and the one mapping from errors to statuses. Registrations and reads go to
// PostgreSQL; an upload stores its bytes in the blob store and publishes upload.completed; an
// answer of 200 to an upload or an event means JetStream acknowledged the publish.
package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
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
	// EndpointConcurrency and ReceiverTimeout are the dispatcher's defaults
	// (HOOKLINE_ENDPOINT_CONCURRENCY, HOOKLINE_RECEIVER_TIMEOUT), shown for a webhook that did
	// not set its own.
	EndpointConcurrency int
	ReceiverTimeout     time.Duration
	TailHeartbeat       time.Duration // GET /attempts/stream's keepalive comment; 0 = 15s (tail.go)
	AllowPrivateTargets bool          // HOOKLINE_ALLOW_PRIVATE_TARGETS: accept address literals egress blocks
	// Quota, when set, holds the rate limits' buckets, shared by every ingress replica
	// (natsx.SetupQuotas; see ratelimit.go); nil: each replica limits on its own.
	Quota jetstream.KeyValue
	// Consuming, when set, fails /readyz while a consumer of this process is not consuming
	// (the all-in-one's processor and dispatcher).
	Consuming *natsx.Consuming
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
	// schemas: the event types' schemas, for POST /events
	schemas typeSchemas
	// types: the registered event types' names, for the published-events label
	types knownTypes
	// unavailableLogged: unix nanos of the last "PostgreSQL unavailable" warning
	unavailableLogged atomic.Int64

	limitMu sync.Mutex
	limits  map[string]*rate.Limiter
	// quotas: each key's share of its shared bucket (Options.Quota); quotaLogged: unix
	// nanos of the last "shared rate limits unavailable" warning
	quotas      quotas
	quotaLogged atomic.Int64
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
		// Bodies are streamed, never buffered before a handler (body.go): BodyLimit only
		// sizes fasthttp's pre-read; API.body and receiveFile enforce each route's limit.
		BodyLimit:                    int(o.MaxUploadBytes) + uploadFraming,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true, // else fasthttp reads a whole form before the key check
		DisableStartupMessage:        true,
		ErrorHandler:                 a.errorHandler,
		ReadTimeout:                  60 * time.Second,
		IdleTimeout:                  120 * time.Second,
	})
	a.app.Server().HeaderReceived = a.headerReceived
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
	app.Use(deadline)
	app.Use(closeUnread) // a body left unread closes the connection
	// Open to all: probes, metrics, and file content through a signed link.
	app.Get("/healthz", a.healthz)
	app.Get("/readyz", a.ready)
	app.Get("/openapi.yaml", serveOpenAPI)
	app.Get("/metrics", adaptor.HTTPHandler(a.m.Handler()))
	app.Get("/files/:id/content", a.fileContent)

	app.Use(a.authenticate) // every route below needs a key
	app.Get("/event_type", a.listEventTypes)
	app.Post("/event_type", adminOnly, a.createEventType)
	app.Patch("/event_type/:id", adminOnly, a.patchEventType)
	app.Delete("/event_type/:id", adminOnly, a.deleteEventType)

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
	app.Get("/events/rejected", adminOnly, a.listRejected) // before /events/:id
	app.Get("/events", a.listEvents)
	app.Get("/events/:id", a.getEvent)
	app.Get("/attempts/stream", a.streamAttempts) // tail.go
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
		return fail(fiber.StatusServiceUnavailable, "database unreachable")
	}
	if err := natsx.Ready(ctx, a.js); err != nil {
		return fail(fiber.StatusServiceUnavailable, "nats unreachable")
	}
	if a.opts.Consuming != nil {
		if err := a.opts.Consuming.Err(); err != nil {
			return fail(fiber.StatusServiceUnavailable, err.Error())
		}
	}
	return ok(c, "ready", empty{})
}

func (a *API) healthz(c *fiber.Ctx) error { return ok(c, "ok", empty{}) }

// requestTimeout bounds the work of one request (its PostgreSQL and NATS calls): PostgreSQL
// that stops answering without an error (a network black hole) gives a 503 with Retry-After
// (store.IsUnavailable counts a deadline) rather than a request that hangs.
const requestTimeout = 15 * time.Second

func deadline(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	c.SetUserContext(ctx)
	return c.Next()
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

func itoa(n int) string { return strconv.Itoa(n) }
