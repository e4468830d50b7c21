package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// countingReceiver answers 200 and counts requests and distinct webhook-ids.
type countingReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	seen     map[string]int
	requests int
}

func newCountingReceiver(t *testing.T) *countingReceiver {
	rv := &countingReceiver{seen: map[string]int{}}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rv.mu.Lock()
		rv.seen[r.Header.Get("webhook-id")]++
		rv.requests++
		rv.mu.Unlock()
	}))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *countingReceiver) counts() (distinct, requests int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.seen), rv.requests
}

// The all-in-one is killed (SIGKILL) with thousands of deliveries owed to one healthy
// endpoint and restarted at once on the same data directory and database: every event is
// delivered (by distinct webhook-id), no delivery is left short of succeeded, every receipt
// has its attempt row, and the healthy endpoint's backlog is not scheduled away (no delivery
// left retrying). The time from the restart to the last delivery is logged; make bench's
// crash scenario measures it with 20,000.
func TestKillAllInOneWithBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the all-in-one binary")
	}
	const events = 5000
	bin := buildServices(t, "hookline")["hookline"]
	dbName := fmt.Sprintf("hookline_test_%d_crash", os.Getpid())
	t.Cleanup(func() { dropDatabase(t, dbName) })
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":                   mapDatabaseURL(t, "postgres://postgres@postgres:5432/hookline?sslmode=disable", dbName),
		"HOOKLINE_HTTP_ADDR":             httpAddr,
		"HOOKLINE_NATS_LISTEN":           natsAddr,
		"HOOKLINE_NATS_MONITOR":          "127.0.0.1:0",
		"HOOKLINE_DATA_DIR":              t.TempDir(),
		"HOOKLINE_ADMIN_API_KEY":         testEnv["HOOKLINE_ADMIN_API_KEY"],
		"HOOKLINE_ENCRYPTION_KEY":        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
		"PATH":                           os.Getenv("PATH"),
	}
	first := start(t, "hookline", bin, env)
	first.ready(t, httpAddr, 60*time.Second)
	rv := newCountingReceiver(t)
	registerWebhook(t, "http://"+httpAddr, rv.URL)

	nc, err := nats.Connect("nats://"+natsAddr, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		id := "crash-" + strconv.Itoa(i)
		m := &nats.Msg{Subject: "events.upload.completed", Header: nats.Header{nats.MsgIdHdr: []string{id}},
			Data: []byte(`{"id":"` + id + `","user_id":1,"data":{"n":` + strconv.Itoa(i) + `}}`)}
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("events not acknowledged by JetStream after 30s")
	}
	waitFor(t, 60*time.Second, "a quarter delivered", func() bool { d, _ := rv.counts(); return d >= events/4 })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	atKill, _ := rv.counts()

	restart := time.Now()
	second := start(t, "hookline (restarted)", bin, env)
	second.ready(t, httpAddr, 60*time.Second)
	if c, err := js.Consumer(context.Background(), "DELIVERIES", "dispatcher"); err == nil {
		if info, err := c.Info(context.Background()); err == nil {
			t.Logf("after the restart the dispatcher consumer has %d pending, %d awaiting an ack (held by the killed process)",
				info.NumPending, info.NumAckPending)
		}
	}
	conn, err := pgx.Connect(context.Background(), env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(q string) int {
		var n int
		if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for d, _ := rv.counts(); d < events; d, _ = rv.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("60s after the restart %d of %d delivered (%d at the kill); deliveries: %d rows, %d succeeded, %d retrying, %d with attempts",
				d, events, atKill, count("SELECT count(*) FROM deliveries"), count("SELECT count(*) FROM delivery_states WHERE status = 'succeeded'"),
				count("SELECT count(*) FROM delivery_states WHERE status = 'retrying'"), count("SELECT count(DISTINCT delivery_id) FROM delivery_attempts"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restart)
	distinct, requests := rv.counts()
	t.Logf("killed with %d of %d delivered; all %d delivered %.1fs after the restart; %d duplicate requests",
		atKill, events, distinct, took.Seconds(), requests-distinct)

	waitFor(t, 20*time.Second, "every delivery recorded succeeded", func() bool {
		return count("SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == events
	})
	if n := count("SELECT count(*) FROM delivery_states WHERE status = 'retrying'"); n != 0 {
		t.Errorf("%d deliveries to a healthy endpoint left retrying, want 0", n)
	}
	if n := count("SELECT count(DISTINCT delivery_id) FROM delivery_attempts"); n != distinct {
		t.Errorf("%d deliveries have attempt rows, want %d (one per receipt)", n, distinct)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dropDatabase(t *testing.T, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testServerURL())
	if err != nil {
		t.Errorf("drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("drop %s: %v", name, err)
	}
}

// registerWebhook registers target for user 1 and upload.completed with the test admin key and
// returns the webhook's id.
func registerWebhook(t *testing.T, api, target string) string {
	t.Helper()
	get, _ := http.NewRequest(http.MethodGet, api+"/event_type", nil)
	var types []struct{ ID, Name string }
	apiCall(t, get, &types)
	var typeID string
	for _, et := range types {
		if et.Name == "upload.completed" {
			typeID = et.ID
		}
	}
	body, _ := json.Marshal(map[string]any{"event_type_id": typeID, "user_id": 1, "url": target})
	req, _ := http.NewRequest(http.MethodPost, api+"/webhook/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	var w struct{ ID string }
	apiCall(t, req, &w)
	return w.ID
}

func apiCall(t *testing.T, req *http.Request, data any) {
	t.Helper()
	req.Header.Set("Authorization", "Bearer "+testEnv["HOOKLINE_ADMIN_API_KEY"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &env) != nil {
		t.Fatalf("%s %s = %d %s", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	if data != nil {
		if err := json.Unmarshal(env.Data, data); err != nil {
			t.Fatal(err)
		}
	}
}
