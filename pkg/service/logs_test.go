package service

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/hookline/hookline/pkg/httpapi"
)

func TestLogsOff(t *testing.T) {
	a, e, err := openLogs("")
	if a != nil || e != nil || err != nil {
		t.Fatalf(`openLogs("") = %v, %v, %v; want nil, nil, nil`, a, e, err)
	}
	if err := closeLogs(a, e); err != nil {
		t.Fatal(err)
	}
}

// With HOOKLINE_LOG_DIR, requests go to access.log with their request id, and Warn+ records
// go to error.log as well as to the process's own handler, carrying the request id too.
func TestLogsToFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	access, errorLog, err := openLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	log := slog.New(logHandler(slog.NewJSONHandler(&stdout, nil), errorLog)).With("service", "ingress")

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(httpapi.RequestID(), httpapi.AccessLog(access))
	app.Get("/webhook/:id", func(c *fiber.Ctx) error {
		log.InfoContext(c.UserContext(), "looked up")
		log.WarnContext(c.UserContext(), "attempt failed", "status", 500)
		return c.SendStatus(404)
	})
	req := httptest.NewRequest("GET", "/webhook/abc?key=secret", nil)
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := app.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("X-Request-Id = %q, want req-42 echoed", got)
	}
	log.Error("outside a request")
	if err := closeLogs(access, errorLog); err != nil {
		t.Fatal(err)
	}

	lines := readLines(t, filepath.Join(dir, "access.log"))
	if len(lines) != 1 {
		t.Fatalf("access.log has %d lines, want 1", len(lines))
	}
	l := lines[0]
	if l["request_id"] != "req-42" || l["method"] != "GET" || l["route"] != "/webhook/:id" || l["path"] != "/webhook/abc" ||
		l["status"] != 404.0 || l["ip"] == "" || l["time"] == "" {
		t.Errorf("access line = %v", l)
	}
	if _, ok := l["latency_ms"].(float64); !ok {
		t.Errorf("latency_ms = %v, want a number", l["latency_ms"])
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "access.log")); strings.Contains(string(b), "secret") {
		t.Errorf("access.log has the query string: %s", b)
	}

	errs := readLines(t, filepath.Join(dir, "error.log"))
	if len(errs) != 2 || errs[0]["msg"] != "attempt failed" || errs[0]["request_id"] != "req-42" ||
		errs[0]["service"] != "ingress" || errs[1]["msg"] != "outside a request" || errs[1]["request_id"] != nil {
		t.Errorf("error.log = %v, want the warning (with request_id and service) and the error", errs)
	}
	if out := stdout.String(); strings.Count(out, "\n") != 3 || !strings.Contains(out, `"request_id":"req-42"`) {
		t.Errorf("stdout = %s, want all 3 records, with the request id", out)
	}
	fi, err := os.Stat(filepath.Join(dir, "error.log"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("error.log mode = %v, %v; want 0640", fi.Mode(), err)
	}
}

// A request without a usable X-Request-Id gets a generated one, echoed and logged.
func TestRequestIDGenerated(t *testing.T) {
	var buf bytes.Buffer
	var seen string
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(httpapi.RequestID(), httpapi.AccessLog(&buf))
	app.Get("/healthz", func(c *fiber.Ctx) error {
		seen = httpapi.RequestIDFrom(c.UserContext())
		return c.SendString("ok")
	})
	for _, in := range []string{"", "two words", strings.Repeat("x", 129), "a\nb"} {
		buf.Reset()
		req := httptest.NewRequest("GET", "/healthz", nil)
		if in != "" {
			req.Header.Set("X-Request-Id", in)
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Header.Get("X-Request-Id")
		if len(got) != 36 || got == in || seen != got || !strings.Contains(buf.String(), got) {
			t.Errorf("X-Request-Id %q: answered %q, context %q, log %s; want one fresh UUID", in, got, seen, buf.String())
		}
	}
	if httpapi.RequestIDFrom(context.Background()) != "" {
		t.Error("RequestIDFrom(background) is not empty")
	}
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	dec := json.NewDecoder(f)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
}
