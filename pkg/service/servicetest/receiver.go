package servicetest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/webhook"
)

// Received is one request a Receiver got.
type Received struct {
	ID, Timestamp, Signature string
	Header                   http.Header
	Body                     []byte
	At                       time.Time
	Verified                 bool // the signature checked out against the receiver's secret
}

// Receiver is a real HTTP endpoint on loopback that records what it gets and answers with the
// status its Respond function picks for the n-th request (1-based).
type Receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []Received
	secret  webhook.Secret
	Respond func(n int, r *http.Request) int
}

// NewReceiver starts a receiver that answers 200 unless Respond says otherwise.
func NewReceiver(tb testing.TB) *Receiver {
	rv := &Receiver{Respond: func(int, *http.Request) int { return 200 }}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := Received{ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
			Signature: r.Header.Get("webhook-signature"), Header: r.Header.Clone(), Body: body, At: time.Now()}
		rv.mu.Lock()
		if rv.secret != "" {
			got.Verified = webhook.Verify(rv.secret, got.ID, got.Timestamp, got.Signature, body, time.Now(), 5*time.Minute) == nil
		}
		rv.got = append(rv.got, got)
		n, respond := len(rv.got), rv.Respond
		rv.mu.Unlock()
		w.WriteHeader(respond(n, r))
	}))
	tb.Cleanup(rv.Close)
	return rv
}

// Verify makes the receiver check every signature with secret.
func (rv *Receiver) Verify(secret string) {
	rv.mu.Lock()
	rv.secret = webhook.Secret(secret)
	rv.mu.Unlock()
}

// Got returns a copy of what arrived so far.
func (rv *Receiver) Got() []Received {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]Received(nil), rv.got...)
}

// Count is how many requests arrived.
func (rv *Receiver) Count() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.got)
}
