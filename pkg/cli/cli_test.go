package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/cli"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/store"
)

// syncBuffer is a bytes.Buffer a running tail writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	out, err string
	code     int
}

// run runs the client's entry point as `hookline args…` with HOOKLINE_URL and HOOKLINE_API_KEY.
func run(ctx context.Context, url, key string, stdout, stderr *syncBuffer, args ...string) int {
	env := map[string]string{"HOOKLINE_URL": url, "HOOKLINE_API_KEY": key}
	return cli.Run(ctx, args, func(k string) string { return env[k] }, stdout, stderr)
}

// TestCLI drives every command of the client against the in-process system: tables, --json as
// the API answered it, the tail, and the exit code of each kind of failure.
func TestCLI(t *testing.T) {
	sys := servicetest.StartConfig(t, servicetest.NewConfig(t, nil), service.Tuning{TailHeartbeat: 50 * time.Millisecond})
	userKey, err := service.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateAPIKey(context.Background(), sys.DB, userKey, 5, false, "cli"); err != nil {
		t.Fatal(err)
	}
	hookline := func(key string, args ...string) result {
		t.Helper()
		var out, errOut syncBuffer
		code := run(context.Background(), sys.URL, key, &out, &errOut, args...)
		return result{out.String(), errOut.String(), code}
	}
	admin := func(args ...string) result { t.Helper(); return hookline(servicetest.AdminKey, args...) }
	want := func(r result, code int, contains ...string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.out, r.err)
		}
		for _, s := range contains {
			if !strings.Contains(r.out, s) {
				t.Fatalf("stdout lacks %q:\n%s", s, r.out)
			}
		}
	}
	data := func(r result, v any) {
		t.Helper()
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal([]byte(r.out), &env); err != nil {
			t.Fatalf("--json output %q: %v", r.out, err)
		}
		if err := json.Unmarshal(env.Data, v); err != nil {
			t.Fatalf("--json data %s: %v", env.Data, err)
		}
	}

	// Event types.
	want(admin("event-types", "create", "--name", "cli.test", "--description", "from the CLI"), 0, "cli.test", "from the CLI")
	want(admin("event-types", "list"), 0, "ID", "NAME", "DESCRIPTION", "cli.test", "upload.completed")
	want(hookline(userKey, "event-types", "create", "--name", "cli.nope"), cli.ExitClientError) // 403
	want(admin("event-types", "create"), cli.ExitUsage)
	want(admin("event-types", "frobnicate"), cli.ExitUsage)
	want(admin("nonsense"), cli.ExitUsage)

	// Webhooks: a receiver that answers 200 and one that always fails.
	ok := servicetest.NewReceiver(t)
	bad := servicetest.NewReceiver(t)
	bad.Respond = func(int, *http.Request) int { return 500 }
	var good struct{ ID, Secret string }
	r := hookline(userKey, "webhooks", "create", "--json", "--user-id", "5", "--url", ok.URL, "--event-type", "cli.test", "--header", "X-From=cli")
	want(r, 0)
	data(r, &good)
	if good.ID == "" || !strings.HasPrefix(good.Secret, "whsec_") {
		t.Fatalf("webhooks create --json: %s", r.out)
	}
	failing := admin("webhooks", "create", "--user-id", "5", "--url", bad.URL, "--event-type", sys.EventTypeID(t, "cli.test"))
	want(failing, 0, "secret", "whsec_")
	failingID := fieldOf(t, failing.out, "id")
	want(hookline(userKey, "webhooks", "list"), 0, "USER_ID", good.ID, failingID, ok.URL)
	want(admin("webhooks", "get", good.ID), 0, "custom_headers", "X-From", ok.URL)
	want(admin("webhooks", "create", "--user-id", "5", "--url", ok.URL, "--event-type", "no.such.type"), cli.ExitUsage)
	want(admin("webhooks", "create", "--user-id", "5", "--url", "ftp://x", "--event-type", "cli.test"), cli.ExitClientError) // 422
	want(admin("webhooks", "update", good.ID, "--enabled", "false"), 0, "enabled")
	if r := admin("webhooks", "get", good.ID); fieldOf(t, r.out, "enabled") != "false" {
		t.Fatalf("after update --enabled false: %s", r.out)
	}
	want(admin("webhooks", "update", good.ID, "--enabled", "true"), 0)
	// --json is the API's answer byte for byte.
	apiAnswer := sys.Do(t, http.MethodGet, "/webhook/"+good.ID, nil).Raw
	if r := admin("webhooks", "get", good.ID, "--json"); strings.TrimSpace(r.out) != strings.TrimSpace(string(apiAnswer)) {
		t.Fatalf("webhooks get --json = %s, the API answered %s", r.out, apiAnswer)
	}
	// Another tenant's webhook is a 404: exit 2.
	otherKey, err := service.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateAPIKey(context.Background(), sys.DB, otherKey, 6, false, "cli"); err != nil {
		t.Fatal(err)
	}
	if r := hookline(otherKey, "webhooks", "get", good.ID); r.code != cli.ExitClientError || !strings.Contains(r.err, "404") {
		t.Fatalf("another user's webhook: exit %d, stderr %s", r.code, r.err)
	}

	// The tail, started before the events: one line per attempt.
	tailCtx, stopTail := context.WithCancel(context.Background())
	var tailOut, tailErr syncBuffer
	tailDone := make(chan int, 1)
	go func() { tailDone <- run(tailCtx, sys.URL, userKey, &tailOut, &tailErr, "tail") }()
	var jsonOut, jsonErr syncBuffer
	jsonDone := make(chan int, 1)
	go func() {
		jsonDone <- run(tailCtx, sys.URL, servicetest.AdminKey, &jsonOut, &jsonErr, "tail", "--json", "--webhook-id", good.ID)
	}()
	servicetest.Eventually(t, 10*time.Second, "both tails connected", func() bool {
		return strings.Contains(tailErr.String(), "tailing") && strings.Contains(jsonErr.String(), "tailing")
	})

	want(hookline(userKey, "events", "send", "--type", "cli.test", "--user-id", "5", "--id", "cli-1", "--data", `{"n":1}`), 0, "cli-1", "false")
	want(hookline(userKey, "events", "send", "--type", "cli.test", "--user-id", "6", "--data", `{}`), cli.ExitClientError) // 403
	want(admin("events", "send", "--type", "cli.test", "--user-id", "5", "--data", `not json`), cli.ExitUsage)

	// good: one attempt, succeeded; bad: three attempts (the test schedule), failed.
	servicetest.Eventually(t, 30*time.Second, "four attempts in the tail", func() bool {
		return strings.Count(tailOut.String(), "\n") >= 4
	})
	servicetest.Eventually(t, 30*time.Second, "the webhook-filtered JSON tail", func() bool {
		return strings.Count(jsonOut.String(), "\n") >= 1
	})
	stopTail()
	if code := <-tailDone; code != 0 {
		t.Fatalf("tail exit %d after interrupt: %s", code, tailErr.String())
	}
	if code := <-jsonDone; code != 0 {
		t.Fatalf("tail --json exit %d after interrupt: %s", code, jsonErr.String())
	}
	lines := strings.Split(strings.TrimSpace(tailOut.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("tail printed %d lines, want 4:\n%s", len(lines), tailOut.String())
	}
	var succeeded, failed int
	for _, l := range lines {
		if !strings.Contains(l, "event=cli-1") || !strings.Contains(l, "cli.test") {
			t.Errorf("tail line %q lacks the event", l)
		}
		switch {
		case strings.Contains(l, "succeeded") && strings.Contains(l, " 200 ") && strings.Contains(l, "webhook="+good.ID):
			succeeded++
		case strings.Contains(l, " 500 ") && strings.Contains(l, "webhook="+failingID):
			if strings.Contains(l, "failed") {
				failed++
			}
		default:
			t.Errorf("tail line %q: unexpected", l)
		}
	}
	if succeeded != 1 || failed != 1 {
		t.Errorf("tail: %d succeeded, %d failed lines, want 1 and 1:\n%s", succeeded, failed, tailOut.String())
	}
	var rec delivery.Record
	if err := json.Unmarshal([]byte(strings.TrimSpace(jsonOut.String())), &rec); err != nil ||
		rec.WebhookID.String() != good.ID || rec.EventID != "cli-1" || rec.Status != delivery.StatusSucceeded {
		t.Fatalf("tail --json --webhook-id: %q (%v)", jsonOut.String(), err)
	}

	// Deliveries.
	servicetest.Eventually(t, 10*time.Second, "the failed delivery listed", func() bool {
		return strings.Contains(admin("deliveries", "list", failingID, "--status", "failed").out, "cli-1")
	})
	r = admin("deliveries", "list", failingID, "--status", "failed", "--json")
	var failedList []struct{ ID string }
	data(r, &failedList)
	if len(failedList) != 1 {
		t.Fatalf("deliveries list --json: %s", r.out)
	}
	want(admin("deliveries", "get", failedList[0].ID), 0, "ATTEMPT", "STATUS_CODE", "500", "failed")
	want(admin("deliveries", "retry", failedList[0].ID), 0, "Retry queued")
	r = admin("deliveries", "list", good.ID, "--json")
	var goodList []struct{ ID string }
	data(r, &goodList)
	if len(goodList) != 1 {
		t.Fatalf("deliveries list --json: %s", r.out)
	}
	if r := admin("deliveries", "retry", goodList[0].ID); r.code != cli.ExitClientError || !strings.Contains(r.err, "409") {
		t.Fatalf("retry of a succeeded delivery: exit %d, stderr %s", r.code, r.err)
	}
	want(admin("deliveries", "list"), cli.ExitUsage)

	// Events.
	want(admin("events", "get", "cli-1"), 0, "cli.test", "occurred_at", "WEBHOOK_ID", good.ID)
	want(hookline(userKey, "events", "list", "--type", "cli.test"), 0, "RECEIVED_AT", "cli-1")
	want(admin("events", "list", "--since", "not a time"), cli.ExitClientError) // 422

	// Rotate, delete, and what a gone server is.
	want(admin("webhooks", "rotate-secret", good.ID), 0, "whsec_", "previous_secret_expires_at")
	want(admin("webhooks", "delete", good.ID), 0)
	want(admin("webhooks", "get", good.ID), cli.ExitClientError)
	var out, errOut syncBuffer
	if code := run(context.Background(), "http://127.0.0.1:1", "k", &out, &errOut, "webhooks", "list"); code != cli.ExitServerError {
		t.Fatalf("unreachable API: exit %d, want %d (%s)", code, cli.ExitServerError, errOut.String())
	}
}

// fieldOf reads a "field  value" line of a record's table.
func fieldOf(t *testing.T, out, field string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			return f[1]
		}
	}
	t.Fatalf("no %s in:\n%s", field, out)
	return ""
}
