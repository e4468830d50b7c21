// Package servicetest runs the whole all-in-one inside a test: its own database, an embedded
// nats-server on random ports with a temp store, the API on a random port, private targets
// allowed and retry waits in milliseconds. Helpers here speak to it over real HTTP.
package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// AdminKey is the admin key of every test system; Do sends it unless told otherwise.
const AdminKey = "test-admin-key-0123456789abcdef0123456789"

// System is a running all-in-one.
type System struct {
	URL     string // http://127.0.0.1:port of the API
	NATSURL string
	DB      *store.DB // a separate pool on the system's database, for assertions
	Config  config.Config
	stop    context.CancelFunc
	done    chan error
}

// Start runs the all-in-one until the test ends. edit may change the configuration first.
func Start(tb testing.TB, edit func(*config.Config)) *System {
	tb.Helper()
	return StartConfig(tb, NewConfig(tb, edit), service.Tuning{})
}

// NewConfig is the configuration Start uses: a fresh database, random ports, a temp data dir,
// private targets allowed, millisecond retries; edit may change it.
func NewConfig(tb testing.TB, edit func(*config.Config)) config.Config {
	tb.Helper()
	cfg := config.Default("127.0.0.1:0")
	cfg.DatabaseURL = storetest.NewURL(tb)
	cfg.NATSListen = "127.0.0.1:0"
	cfg.NATSMonitor = "127.0.0.1:0"
	cfg.DataDir = tb.TempDir()
	cfg.AllowPrivateTargets = true
	cfg.RetrySchedule = delivery.Schedule{0, 20 * time.Millisecond, 20 * time.Millisecond}
	cfg.ReceiverTimeout = 5 * time.Second
	cfg.AdminAPIKey = AdminKey
	if edit != nil {
		edit(&cfg)
	}
	return cfg
}

// StartConfig runs the all-in-one with cfg exactly, and tune.
func StartConfig(tb testing.TB, cfg config.Config, tune service.Tuning) *System {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &System{Config: cfg, stop: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	if tune.ScanInterval == 0 {
		tune.ScanInterval = 10 * time.Millisecond
	}
	if tune.HandBackDelay == 0 {
		tune.HandBackDelay = 50 * time.Millisecond
	}
	if tune.MaxDBConns == 0 {
		tune.MaxDBConns = 4
	}
	tune.Ready = func(httpAddr, natsURL string) {
		s.URL, s.NATSURL = "http://"+httpAddr, natsURL
		close(ready)
	}
	level := slog.LevelWarn
	if os.Getenv("HOOKLINE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(testWriter{tb}, &slog.HandlerOptions{Level: level}))
	go func() { s.done <- service.Run(ctx, log, cfg, service.AllInOne, tune) }()
	select {
	case <-ready:
	case err := <-s.done:
		cancel()
		tb.Fatalf("servicetest: all-in-one did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		tb.Fatal("servicetest: all-in-one not ready after 60s")
	}
	db, err := store.Open(context.Background(), cfg.DatabaseURL, 2)
	if err != nil {
		tb.Fatal(err)
	}
	s.DB = db
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("servicetest: all-in-one stopped with %v", err)
		}
		db.Close()
	})
	return s
}

// Stop cancels the system and waits for Run to return (at most 30 s); it returns Run's error.
func (s *System) Stop() error {
	s.stop()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		return context.DeadlineExceeded
	}
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Response is a decoded envelope plus the HTTP status.
type Response struct {
	Status  int
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
	Error   bool            `json:"error"`
	Header  http.Header     `json:"-"`
	Raw     []byte          `json:"-"`
}

// Do sends a request with an optional JSON body (a string is sent as is) and decodes the
// envelope; it fails the test when the answer is not an envelope. It sends the admin key
// unless headers set Authorization (to "" for no key at all).
func (s *System) Do(tb testing.TB, method, path string, body any, headers ...string) Response {
	tb.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	setHeaders(req, headers)
	return send(tb, req)
}

// Upload posts one multipart file under field (normally "file").
func (s *System) Upload(tb testing.TB, webhookID, field, name string, content []byte, headers ...string) Response {
	tb.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = fw.Write(content)
	_ = mw.Close()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/upload_file/webhook_id/"+webhookID, &buf)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	setHeaders(req, headers)
	return send(tb, req)
}

func setHeaders(req *http.Request, headers []string) {
	req.Header.Set("Authorization", "Bearer "+AdminKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
}

func send(tb testing.TB, req *http.Request) Response {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	CheckResponse(tb, req, resp.StatusCode, resp.Header, raw) // every answer against docs/openapi.yaml
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if req.URL.Path == "/metrics" {
		return out
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		tb.Fatalf("%s %s: answer is not the envelope (%d): %q", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	out.Status = resp.StatusCode
	return out
}

// Decode unmarshals the envelope's data into v.
func (r Response) Decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Data, v); err != nil {
		tb.Fatalf("decode data %s: %v", r.Data, err)
	}
}

// Eventually polls cond every 10 ms until it is true or timeout passes.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Count runs a SELECT count(*) … query on the system's database.
func (s *System) Count(tb testing.TB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := s.DB.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// EventTypeID returns the id of the event type named name.
func (s *System) EventTypeID(tb testing.TB, name string) string {
	tb.Helper()
	var types []struct{ ID, Name string }
	s.Do(tb, http.MethodGet, "/event_type", nil).Decode(tb, &types)
	for _, t := range types {
		if t.Name == name {
			return t.ID
		}
	}
	tb.Fatalf("no event type %q", name)
	return ""
}

// Webhook is a registration as returned by POST /webhook/register.
type Webhook struct {
	ID     string `json:"id"`
	UserID int64  `json:"user_id"`
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// Register registers url for user to upload.completed (extra fields merge into the body) and
// fails the test unless it is a 200.
func (s *System) Register(tb testing.TB, user int64, url string, extra map[string]any, headers ...string) Webhook {
	tb.Helper()
	body := map[string]any{"event_type_id": s.EventTypeID(tb, "upload.completed"), "user_id": user, "url": url}
	for k, v := range extra {
		body[k] = v
	}
	r := s.Do(tb, http.MethodPost, "/webhook/register", body, headers...)
	if r.Status != http.StatusOK {
		tb.Fatalf("register: %d %s", r.Status, r.Raw)
	}
	var w Webhook
	r.Decode(tb, &w)
	return w
}
