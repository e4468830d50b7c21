package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"github.com/gofiber/fiber/v2/utils"
)

// requestIDKey is where RequestID puts the id in the request's user context.
type requestIDKey struct{}

// RequestIDFrom returns the request id RequestID stored in ctx, or "" outside a request. Log
// handlers use it to add request_id to every record logged with the request's context.
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// maxRequestIDLen bounds a caller's X-Request-Id: longer or non-printable ones are replaced.
const maxRequestIDLen = 128

// RequestID gives every request an id: the caller's X-Request-Id when it is 1–128 printable
// ASCII characters, else a fresh UUID. The id is echoed in the X-Request-Id response header
// (Fiber's requestid middleware), kept in the Fiber locals under "requestid", and put in the
// request's user context for RequestIDFrom.
func RequestID() fiber.Handler {
	mw := requestid.New(requestid.Config{Header: fiber.HeaderXRequestID, Generator: utils.UUIDv4})
	return func(c *fiber.Ctx) error {
		// A caller's id ends up in log files: replace what could forge or bloat a line.
		id := c.Get(fiber.HeaderXRequestID)
		if !validRequestID(id) {
			id = utils.UUIDv4()
			c.Request().Header.Set(fiber.HeaderXRequestID, id)
		}
		c.SetUserContext(context.WithValue(c.UserContext(), requestIDKey{}, id))
		return mw(c) // echoes the header, sets the local, calls the next handler
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// accessLine is one line of the access log.
type accessLine struct {
	Time      string  `json:"time"`
	RequestID string  `json:"request_id"`
	Method    string  `json:"method"`
	Route     string  `json:"route"` // the matched pattern, e.g. /webhook/:id; "unmatched" for a 404
	Path      string  `json:"path"`  // the raw path, without the query string
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	IP        string  `json:"ip"`
}

// AccessLog writes one JSON line per request to w: time (RFC3339 with milliseconds, UTC),
// request_id, method, route, path, status, latency_ms and ip. Install it after RequestID and
// before the middleware that turns errors into answers, so it sees the final status. Query
// strings, headers and bodies are never logged (they may carry keys or signed links). A
// failed write is dropped: the access log never fails a request.
func AccessLog(w io.Writer) fiber.Handler {
	var mu sync.Mutex // one Write per line, and lines never interleave
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		if err != nil {
			// Let the app's error handler write the answer now, so its status is logged.
			if herr := c.App().ErrorHandler(c, err); herr != nil {
				return herr
			}
		}
		route := c.Route().Path
		if route == "/" && c.Path() != "/" || route == "" {
			route = "unmatched"
		}
		id, _ := c.Locals("requestid").(string)
		line, merr := json.Marshal(accessLine{
			Time:      start.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			RequestID: id,
			Method:    c.Method(),
			Route:     route,
			Path:      c.Path(),
			Status:    c.Response().StatusCode(),
			LatencyMS: float64(time.Since(start).Microseconds()) / 1000,
			IP:        c.IP(),
		})
		if merr == nil {
			mu.Lock()
			_, _ = w.Write(append(line, '\n'))
			mu.Unlock()
		}
		return nil
	}
}
