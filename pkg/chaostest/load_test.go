package chaostest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/webhook"
)

func waitTCP(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections after %s: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receiver is every webhook's endpoint (/w/<index>): it verifies each request's signature with
// its webhook's secret, answers 200 after delay, and counts the requests it answered 200 per
// webhook-id. It can be told to fail: every request with 500 (fail), or flap (every other
// request 500, the others held until the dispatcher gives up), and to drip its answer to some
// webhooks (headers at once, then the body a byte per second).
type receiver struct {
	*httptest.Server
	delay time.Duration // guarded by mu (setDelay)

	mu       sync.Mutex
	secrets  []webhook.Secret
	seen     map[string]*receipt
	requests int
	badSig   int
	failing  bool // answer 500 (and count the request only in failed)
	flapping bool // every other request 500, the others hang until the client gives up
	flaps    int
	failed   int // requests answered 500 or left hanging on purpose
	timedOut int // requests the client gave up on while the receiver held them
	dripping map[int]bool
	dripped  int
	dripMax  time.Duration // the longest a drip went on before the client hung up
}

type receipt struct {
	count       int
	first, last time.Time
	upload      bool // an upload.completed delivery
}

func newReceiver(t *testing.T, delay time.Duration) *receiver {
	rv := &receiver{delay: delay, seen: map[string]*receipt{}, dripping: map[int]bool{}}
	rv.Server = httptest.NewServer(http.HandlerFunc(rv.serve))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *receiver) setWebhooks(hooks []hook) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, h := range hooks {
		rv.secrets = append(rv.secrets, webhook.Secret(h.secret))
	}
}

// hangFor is the longest the receiver holds a request it means to time out.
const hangFor = 30 * time.Second

func (rv *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	now := time.Now()
	id := r.Header.Get("webhook-id")
	i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/w/"))
	rv.mu.Lock()
	ok := i >= 0 && i < len(rv.secrets) &&
		webhook.Verify(rv.secrets[i], id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, now, 5*time.Minute) == nil
	rv.requests++
	if !ok {
		rv.badSig++
	}
	if ok && (rv.failing || rv.flapping) {
		rv.failed++
		rv.flaps++
		hang := rv.flapping && rv.flaps%2 == 0
		rv.mu.Unlock()
		if !hang {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		select {
		case <-r.Context().Done():
			rv.mu.Lock()
			rv.timedOut++
			rv.mu.Unlock()
		case <-time.After(hangFor):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	drip := ok && rv.dripping[i]
	rc := rv.seen[id]
	if rc == nil {
		rc = &receipt{first: now, upload: bytes.HasPrefix(body, []byte(`{"type":"upload.completed"`))}
		rv.seen[id] = rc
	}
	rc.count++
	rc.last = now
	rv.mu.Unlock()
	if drip {
		rv.drip(w, r, now)
		return
	}
	rv.mu.Lock()
	delay := rv.delay
	rv.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// drip answers 200 with its headers at once, then one byte a second, up to a minute, until
// the client hangs up; it records how long that took.
func (rv *receiver) drip(w http.ResponseWriter, r *http.Request, start time.Time) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	for range 60 {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Second):
			if _, err := w.Write([]byte(".")); err == nil && rc.Flush() == nil {
				continue
			}
		}
		break
	}
	took := time.Since(start)
	rv.mu.Lock()
	rv.dripped++
	rv.dripMax = max(rv.dripMax, took)
	rv.mu.Unlock()
}

// setDelay changes how long the receiver holds each request it answers 200.
func (rv *receiver) setDelay(d time.Duration) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.delay = d
}

// fail makes every request fail with 500 (true) or succeed again (false).
func (rv *receiver) fail(on bool) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.failing = on
}

// flap makes every other request fail with 500 and the others hang (true), or stops it.
func (rv *receiver) flap(on bool) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.flapping = on
}

// dripTo makes the webhooks of these indexes get their answers dripped (true), or not.
func (rv *receiver) dripTo(on bool, webhooks ...int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, i := range webhooks {
		rv.dripping[i] = on
	}
}

func (rv *receiver) distinct() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.seen)
}

// event is one event of the load and when JetStream acknowledged it (zero: never).
type event struct {
	id       string
	user     int
	typ      string
	viaAPI   bool
	accepted time.Time
}

// loader sends events at a steady rate, half through POST /events and half straight to NATS
// (events.<type>), and retries each with the same id until it is acknowledged or giveUp.
type loader struct {
	events []event
	wg     sync.WaitGroup
	ended  time.Time

	mu        sync.Mutex
	apiStatus map[string]int // answers other than 200, by status (or "error")
	natsErrs  int
	accepted  atomic.Int64
	fanout    int // deliveries each event is owed (the same for every user and type)

	uploads           []upload       // answered 200 (guarded by mu)
	uploadsUnanswered int            // upload requests without a 200 (guarded by mu)
	uploadStatus      map[string]int // their answers, by status (or "error") (guarded by mu)
	uploadsOK         atomic.Int64
}

// upload is a file upload answered 200: its upload.completed event is owed to its webhook.
type upload struct {
	eventID, fileID string
	webhook         uuid.UUID
	accepted        time.Time
}

// owed is how many deliveries the events and uploads acknowledged so far are owed.
func (ld *loader) owed() int { return int(ld.accepted.Load())*ld.fanout + int(ld.uploadsOK.Load()) }

func startLoad(t *testing.T, s *stack, n, rate int, giveUp time.Duration) *loader {
	t.Helper()
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectBufSize(-1)) // no buffering while away: a publish either gets its ack or retries
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ld := &loader{events: make([]event, n), apiStatus: map[string]int{}, uploadStatus: map[string]int{}}
	for _, h := range s.webhooks {
		if h.user == 1 && slices.Contains(h.types, eventTypes[0]) {
			ld.fanout++
		}
	}
	prefix := fmt.Sprintf("chaos-%d-", time.Now().UnixNano())
	for i := range ld.events {
		ld.events[i] = event{id: prefix + strconv.Itoa(i), user: i%3 + 1, typ: eventTypes[(i/3)%2], viaAPI: i%2 == 0}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	next := make(chan int)
	stop := time.Now().Add(giveUp)
	for range 32 {
		ld.wg.Go(func() {
			for i := range next {
				ld.send(s, client, js, &ld.events[i], stop)
			}
		})
	}
	ld.wg.Go(func() {
		defer close(next)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := range n {
			<-tick.C
			next <- i
		}
	})
	return ld
}

func (ld *loader) send(s *stack, client *http.Client, js jetstream.JetStream, e *event, stop time.Time) {
	body, _ := json.Marshal(map[string]any{"id": e.id, "type": e.typ, "user_id": e.user, "data": map[string]any{"id": e.id}})
	for time.Now().Before(stop) {
		if e.viaAPI {
			req, _ := http.NewRequest(http.MethodPost, "http://"+s.ingress.addr+"/events", bytes.NewReader(body))
			// The user's own key, so PostgreSQL away tests the ingress's cached key.
			req.Header.Set("Authorization", "Bearer "+s.userKeys[e.user])
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					e.accepted = time.Now()
					ld.accepted.Add(1)
					return
				}
			}
			key := "error"
			if err == nil {
				key = strconv.Itoa(resp.StatusCode)
			}
			ld.mu.Lock()
			ld.apiStatus[key]++
			ld.mu.Unlock()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: "events." + e.typ, Data: body,
				Header: nats.Header{nats.MsgIdHdr: []string{e.id}}})
			cancel()
			if err == nil {
				e.accepted = time.Now()
				ld.accepted.Add(1)
				return
			}
			ld.mu.Lock()
			ld.natsErrs++
			ld.mu.Unlock()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startUploads runs n uploaders, each posting a small multipart file every 250 ms to the
// webhooks subscribed to upload.completed in turn (with the owner's key), until stop is
// called. An upload without a 200 (the ingress away, or an error) is retried as a new upload:
// uploads have no client id, so the lost answer's upload may still be delivered.
func (ld *loader) startUploads(s *stack, n int) (stop func()) {
	var hooks []hook
	for _, h := range s.webhooks {
		if slices.Contains(h.types, uploadType) {
			hooks = append(hooks, h)
		}
	}
	done := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	var seq atomic.Int64
	for g := range n {
		ld.wg.Go(func() {
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for i := g; ; i += n {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				h := hooks[i%len(hooks)]
				u, status := postUpload(s, client, h, seq.Add(1))
				ld.mu.Lock()
				if status == "200" {
					ld.uploads = append(ld.uploads, u)
					ld.uploadsOK.Add(1)
				} else {
					ld.uploadsUnanswered++
					ld.uploadStatus[status]++
				}
				ld.mu.Unlock()
			}
		})
	}
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// postUpload sends one file to POST /upload_file/webhook_id/<h>; status is "200" with the
// upload's ids, else the answer's status or "error".
func postUpload(s *stack, client *http.Client, h hook, n int64) (upload, string) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", fmt.Sprintf("chaos-%d.txt", n))
	_, _ = fw.Write(bytes.Repeat([]byte(fmt.Sprintf("upload %d during chaos\n", n)), 64))
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.ingress.addr+"/upload_file/webhook_id/"+h.id.String(), &body)
	req.Header.Set("Authorization", "Bearer "+s.userKeys[h.user])
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := client.Do(req)
	if err != nil {
		return upload{}, "error"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return upload{}, "error"
	}
	if resp.StatusCode != http.StatusOK {
		return upload{}, strconv.Itoa(resp.StatusCode)
	}
	var env struct {
		Data struct {
			FileID    string    `json:"file_id"`
			EventID   string    `json:"event_id"`
			WebhookID uuid.UUID `json:"webhook_id"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &env) != nil || env.Data.EventID == "" || env.Data.WebhookID != h.id {
		return upload{}, "200 unreadable: " + string(b)
	}
	return upload{eventID: env.Data.EventID, fileID: env.Data.FileID, webhook: h.id, accepted: time.Now()}, "200"
}

// wait returns once every event is acknowledged or given up.
func (ld *loader) wait() {
	ld.wg.Wait()
	ld.ended = time.Now()
}
