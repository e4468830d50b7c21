package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/httpapi"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/store"
)

// routes lists every route the API registers, as "METHOD /path", the way Fiber holds them.
func routes(t *testing.T) []string {
	t.Helper()
	api := httpapi.New(nil, nil, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), httpapi.Options{})
	var out []string
	for _, r := range api.App().GetRoutes(true) {
		if r.Method == http.MethodHead {
			continue // Fiber adds HEAD beside every GET
		}
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func apiKey(t *testing.T, sys *servicetest.System, user int64) string {
	t.Helper()
	key, err := service.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateAPIKey(context.Background(), sys.DB, key, user, false, "t"); err != nil {
		t.Fatal(err)
	}
	return key
}

// Another tenant's key gets 404 for every resource of user 1 (existence is not leaked), 403
// when it acts for user 1 in a body or on an admin route, and changes nothing. Every route of
// the API must have a case here: a new route without one fails the test.
func TestTenantIsolationEveryRoute(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	k1, k2 := apiKey(t, sys, 1), apiKey(t, sys, 2)
	auth1, auth2 := []string{"Authorization", "Bearer " + k1}, []string{"Authorization", "Bearer " + k2}

	w := sys.Register(t, 1, rv.URL, nil, auth1...)
	up := sys.Upload(t, w.ID, "file", "a.txt", []byte("a"), auth1...)
	var file struct {
		FileID  string `json:"file_id"`
		EventID string `json:"event_id"`
	}
	up.Decode(t, &file)
	servicetest.Eventually(t, 10*time.Second, "delivery and file row", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1 &&
			sys.Count(t, "SELECT count(*) FROM files") == 1
	})
	var deliveryID string
	if err := sys.DB.QueryRowContext(context.Background(), "SELECT id FROM deliveries").Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	et := sys.EventTypeID(t, "upload.completed")

	type probe struct {
		path   string
		body   any
		status int // for user 2's key
	}
	cases := map[string]probe{
		"GET /healthz":                             {"/healthz", nil, 200},
		"GET /readyz":                              {"/readyz", nil, 200},
		"GET /metrics":                             {"/metrics", nil, 200},
		"GET /openapi.yaml":                        {"/openapi.yaml", nil, 200},
		"GET /files/:id/content":                   {"/files/" + file.FileID + "/content", nil, 404},
		"GET /event_type":                          {"/event_type", nil, 200},
		"POST /event_type":                         {"/event_type", map[string]any{"name": "x.y"}, 403},
		"POST /webhook/register":                   {"/webhook/register", map[string]any{"event_type_id": et, "user_id": 1, "url": rv.URL}, 403},
		"GET /webhooks":                            {"/webhooks?user_id=1", nil, 403},
		"GET /webhook/:id":                         {"/webhook/" + w.ID, nil, 404},
		"PATCH /webhook/:id":                       {"/webhook/" + w.ID, map[string]any{"url": "https://evil.example/"}, 404},
		"DELETE /webhook/:id":                      {"/webhook/" + w.ID, nil, 404},
		"POST /webhook/:id/rotate-secret":          {"/webhook/" + w.ID + "/rotate-secret", nil, 404},
		"GET /webhook/:id/deliveries":              {"/webhook/" + w.ID + "/deliveries", nil, 404},
		"POST /webhook/:id/recover":                {"/webhook/" + w.ID + "/recover?since=2020-01-01%2000:00:00", nil, 404},
		"GET /deliveries/:id":                      {"/deliveries/" + deliveryID, nil, 404},
		"POST /deliveries/:id/retry":               {"/deliveries/" + deliveryID + "/retry", nil, 404},
		"POST /upload_file/webhook_id/:webhook_id": {"/upload_file/webhook_id/" + w.ID, nil, 404},
		"GET /files/:id":                           {"/files/" + file.FileID, nil, 404},
		"POST /events":                             {"/events", map[string]any{"type": "upload.completed", "user_id": 1, "data": map[string]any{}}, 403},
		"GET /events/rejected":                     {"/events/rejected", nil, 403},
		"GET /events":                              {"/events?user_id=1", nil, 403},
		"GET /events/:id":                          {"/events/" + file.EventID, nil, 404},
		"PATCH /event_type/:id":                    {"/event_type/" + et, map[string]any{"schema": map[string]any{"type": "object", "required": []string{"x"}}}, 403},
		"DELETE /event_type/:id":                   {"/event_type/" + et, nil, 403},
		"GET /attempts/stream":                     {"/attempts/stream?webhook_id=" + w.ID, nil, 404},
	}
	open := map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /openapi.yaml": true}
	before := tableCounts(t, sys)
	for _, route := range routes(t) {
		c, ok := cases[route]
		if !ok {
			t.Errorf("route %s has no isolation case: add one", route)
			continue
		}
		method := strings.Fields(route)[0]
		t.Run(route, func(t *testing.T) {
			if r := raw(t, sys, method, c.path, c.body, auth2...); r != c.status {
				t.Errorf("user 2's key: %s %s = %d, want %d", method, c.path, r, c.status)
			}
			if !open[route] {
				if r := raw(t, sys, method, c.path, c.body, "Authorization", ""); r != 401 {
					t.Errorf("no key: %s %s = %d, want 401", method, c.path, r)
				}
				if r := raw(t, sys, method, c.path, c.body, "Authorization", "Bearer hl_not-a-key"); r != 401 {
					t.Errorf("unknown key: %s %s = %d, want 401", method, c.path, r)
				}
			}
		})
	}
	after := tableCounts(t, sys)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after another tenant's requests", table, n, after[table])
		}
	}
	// The owner still sees everything, and unchanged.
	var got struct{ URL string }
	sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil, auth1...).Decode(t, &got)
	if got.URL != rv.URL {
		t.Fatalf("owner sees url %q, want %q", got.URL, rv.URL)
	}
	if r := raw(t, sys, http.MethodGet, "/files/"+file.FileID+"/content", nil, auth1...); r != 200 {
		t.Fatalf("owner file content = %d", r)
	}
	var mine []map[string]any
	sys.Do(t, http.MethodGet, "/webhooks", nil, auth2...).Decode(t, &mine)
	if len(mine) != 0 {
		t.Fatalf("user 2 lists %d webhooks, want 0", len(mine))
	}
	sys.Do(t, http.MethodGet, "/events", nil, auth2...).Decode(t, &mine)
	if len(mine) != 0 {
		t.Fatalf("user 2 lists %d events, want 0", len(mine))
	}
}

// raw sends a request and returns only the status (the body may not be an envelope, e.g. /metrics).
func raw(t *testing.T, sys *servicetest.System, method, path string, body any, headers ...string) int {
	t.Helper()
	if path == "/metrics" || path == "/openapi.yaml" || strings.HasSuffix(path, "/content") {
		req, _ := http.NewRequest(method, sys.URL+path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			if headers[i+1] != "" {
				req.Header.Set(headers[i], headers[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		servicetest.CheckResponse(t, req, resp.StatusCode, resp.Header, b)
		return resp.StatusCode
	}
	return sys.Do(t, method, path, body, headers...).Status
}

func tableCounts(t *testing.T, sys *servicetest.System) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, q := range []string{"webhook_registrations", "webhook_configurations", "event_types", "files", "deliveries", "events",
		"delivery_attempts", "webhook_registrations WHERE enabled", "webhook_registrations WHERE deleted_at IS NULL",
		"delivery_states WHERE status = 'succeeded'"} {
		out[q] = sys.Count(t, "SELECT count(*) FROM "+q)
	}
	return out
}
