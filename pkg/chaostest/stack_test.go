package chaostest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// stack is one scenario's system: a database in the shared private cluster, a nats-server
// process with its own store directory, and the three services as processes.
type stack struct {
	t          *testing.T
	pg         *pgCluster
	dbURL      string    // straight to the cluster (the suite's checks)
	pgProxy    *tcpProxy // between the services and the cluster
	userKeys   map[int]string
	nats       *proc
	natsURL    string
	ingress    *service
	processor  *service
	dispatcher *service
	webhooks   []hook
	notes      map[string]any // what a scenario measured besides the checks, for its result
	// recorded holds the deliveries with a success row when the dispatcher crashed (at
	// crashed): none of them may be POSTed again after that.
	recorded map[string]bool
	crashed  time.Time
}

// hook is a registered webhook: its user, the types it is subscribed to, and its secret.
type hook struct {
	id     uuid.UUID
	user   int
	types  []string
	secret string
}

// Event types and subscriptions of the load: 3 users, 10 webhooks, 2 types; an event of user u
// and type ty goes to every one of u's webhooks subscribed to ty (2 of them, whatever u and ty).
var (
	eventTypes    = []string{"chaos.created", "chaos.updated"}
	subscriptions = []struct {
		user  int
		types []string
	}{
		{1, []string{"chaos.created"}},
		{1, []string{"chaos.updated"}},
		{1, []string{"chaos.created", "chaos.updated"}},
		{2, []string{"chaos.created"}},
		{2, []string{"chaos.updated"}},
		{2, []string{"chaos.created"}},
		{2, []string{"chaos.updated"}},
		{3, []string{"chaos.created"}},
		{3, []string{"chaos.updated"}},
		{3, []string{"chaos.created", "chaos.updated"}},
	}
)

// uploadType is the type of an upload's event (seeded by the first migration).
const uploadType = "upload.completed"

type stackOptions struct {
	dispatcherEnv map[string]string // added to the dispatcher's environment (its first start)
	uploads       bool              // every webhook is subscribed to upload.completed too
}

func newStack(t *testing.T, pg *pgCluster, name string, rv *receiver) *stack {
	t.Helper()
	return newStackWith(t, pg, name, rv, stackOptions{})
}

func newStackWith(t *testing.T, pg *pgCluster, name string, rv *receiver, o stackOptions) *stack {
	t.Helper()
	b := buildBinaries(t)
	s := &stack{t: t, pg: pg, userKeys: map[int]string{}, notes: map[string]any{}}
	s.dbURL = pg.createDB(name, b["hookline"])
	s.pgProxy = newProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.port))
	viaProxy := strings.Replace(s.dbURL, fmt.Sprintf(":%d/", pg.port), fmt.Sprintf(":%d/", s.pgProxy.port()), 1)
	for _, u := range []int{1, 2, 3} {
		s.userKeys[u] = createUserKey(t, b["hookline"], s.dbURL, u)
	}

	natsPort := freePort(t)
	s.natsURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	storeDir := filepath.Join(t.TempDir(), "jetstream")
	s.nats = newProc(t, "nats-server", b["nats-server"], nil,
		"-js", "-sd", storeDir, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort))
	s.nats.start()
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", natsPort), 30*time.Second)

	env := map[string]string{
		"DATABASE_URL":                   viaProxy,
		"NATS_URL":                       s.natsURL,
		"HOOKLINE_ADMIN_API_KEY":         adminKey,
		"HOOKLINE_ENCRYPTION_KEY":        encryptionKey,
		"HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
		// Fast retries, so a failed attempt is not what the recovery time measures: no wait
		// over 30 s, so a delivery failing until a receiver comes back is tried again within
		// 30 s (plus the 5 s receiver timeout) of that.
		"HOOKLINE_RETRY_SCHEDULE": "0s,1s,2s,5s,10s,20s,30s,30s,30s,30s,30s,30s",
		// A receiver that hangs or drips holds a slot this long per attempt.
		"HOOKLINE_RECEIVER_TIMEOUT": "5s",
		"HOOKLINE_RATE_LIMIT":       "0",
		"PATH":                      os.Getenv("PATH"),
	}
	if v := os.Getenv("HOOKLINE_CHAOS_RECONCILE_AFTER"); v != "" {
		env["HOOKLINE_RECONCILE_AFTER"] = v // e.g. to see the reconciler repair a loss
	}
	mk := func(name string) *service {
		e := map[string]string{"HOOKLINE_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"HOOKLINE_DATA_DIR": t.TempDir()}
		for k, v := range env {
			e[k] = v
		}
		if name == "dispatcher" {
			for k, v := range o.dispatcherEnv {
				e[k] = v
			}
		}
		sv := &service{proc: newProc(t, name, b[name], e), addr: e["HOOKLINE_HTTP_ADDR"]}
		sv.start()
		return sv
	}
	s.ingress, s.processor, s.dispatcher = mk("ingress"), mk("processor"), mk("dispatcher")
	for _, sv := range s.services() {
		sv.ready(60 * time.Second)
	}

	typeIDs := map[string]string{}
	for _, ty := range eventTypes {
		var et struct{ ID string }
		s.api("POST", "/event_type", map[string]any{"name": ty, "description": "chaos load"}, &et)
		typeIDs[ty] = et.ID
	}
	if o.uploads {
		var types []struct{ ID, Name string }
		s.api("GET", "/event_type", nil, &types)
		for _, et := range types {
			if et.Name == uploadType {
				typeIDs[uploadType] = et.ID
			}
		}
		if typeIDs[uploadType] == "" {
			t.Fatalf("no event type %s in GET /event_type", uploadType)
		}
	}
	for i, sub := range subscriptions {
		types := sub.types
		if o.uploads {
			types = append(slices.Clip(types), uploadType)
		}
		var ids []string
		for _, ty := range types {
			ids = append(ids, typeIDs[ty])
		}
		var w struct {
			ID     uuid.UUID
			Secret string
		}
		s.api("POST", "/webhook/register", map[string]any{"event_type_ids": ids, "user_id": sub.user,
			"url": fmt.Sprintf("%s/w/%d", rv.URL, i)}, &w)
		s.webhooks = append(s.webhooks, hook{id: w.ID, user: sub.user, types: types, secret: w.Secret})
	}
	rv.setWebhooks(s.webhooks)
	return s
}

func (s *stack) services() []*service { return []*service{s.ingress, s.processor, s.dispatcher} }

// createUserKey makes an API key of user with the all-in-one's `apikey create`.
func createUserKey(t *testing.T, hookline, dbURL string, user int) string {
	t.Helper()
	cmd := exec.Command(hookline, "apikey", "create", "--user", strconv.Itoa(user), "--name", "chaos")
	cmd.Env = []string{"DATABASE_URL=" + dbURL, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, ok := strings.CutPrefix(line, "key\t"); ok {
			return strings.TrimSpace(k)
		}
	}
	t.Fatalf("apikey create printed no key:\n%s", out)
	return ""
}

// restartNATS kills nats-server with sig, waits gap and starts it on the same port and store.
func (s *stack) restartNATS(sig syscall.Signal, gap time.Duration) {
	s.nats.kill(sig)
	time.Sleep(gap)
	s.nats.start()
	waitTCP(s.t, s.natsURL[len("nats://"):], 30*time.Second)
}

// api calls the ingress with the admin key and decodes the envelope's data into out.
func (s *stack) api(method, path string, body any, out any) {
	s.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+s.ingress.addr+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &env) != nil {
		s.t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			s.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}
