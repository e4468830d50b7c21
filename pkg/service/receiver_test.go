package service_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// Without HOOKLINE_ALLOW_PRIVATE_TARGETS, a webhook on a loopback address is refused at dial
// time: the attempt is recorded as failed and the receiver never sees a request.
func TestPrivateTargetsRefused(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) {
		c.AllowPrivateTargets = false
		c.RetrySchedule = delivery.Schedule{0}
	})
	rv := servicetest.NewReceiver(t)
	// Address literals are refused at registration (TestRegistrationRefusesPrivateLiterals has
	// every form); a name is not resolved there, so the dial-time guard is what stops it.
	et := sys.EventTypeID(t, "upload.completed")
	for _, u := range []string{rv.URL, "http://169.254.169.254/latest/meta-data", strings.Replace(rv.URL, "127.0.0.1", "[::1]", 1)} {
		r := sys.Do(t, http.MethodPost, "/webhook/register", `{"event_type_id":"`+et+`","user_id":1,"url":"`+u+`"}`)
		if r.Status != 422 {
			t.Errorf("register %s = %d %s, want 422", u, r.Status, r.Raw)
		}
	}
	w := sys.Register(t, 1, strings.Replace(rv.URL, "127.0.0.1", "localhost", 1), nil)
	if r := sys.Upload(t, w.ID, "file", "a.txt", []byte("a")); r.Status != 200 {
		t.Fatalf("upload = %d", r.Status)
	}
	servicetest.Eventually(t, 20*time.Second, "a failed delivery", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'failed'") == 1
	})
	if n := sys.Count(t, "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%blocked%'"); n != 1 {
		t.Errorf("attempts refused as blocked = %d, want 1", n)
	}
	if rv.Count() != 0 {
		t.Fatalf("receiver got %d requests", rv.Count())
	}
}

// A redirect is not followed: the 3xx is a failed attempt, and its target sees nothing. The
// response excerpt is capped at 64 KiB.
func TestRedirectNotFollowedAndExcerptCapped(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.RetrySchedule = delivery.Schedule{0} })
	target := servicetest.NewReceiver(t)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
	}))
	t.Cleanup(big.Close)
	r1 := sys.Register(t, 1, redirect.URL, nil)
	r2 := sys.Register(t, 1, big.URL, nil)
	sys.Upload(t, r1.ID, "file", "a.txt", []byte("a"))
	sys.Upload(t, r2.ID, "file", "a.txt", []byte("a"))
	servicetest.Eventually(t, 10*time.Second, "both failed", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'failed'") == 2
	})
	var code int
	var errText string
	if err := sys.DB.QueryRowContext(context.Background(), `SELECT a.status_code, a.error FROM delivery_attempts a
		JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, r1.ID).Scan(&code, &errText); err != nil {
		t.Fatal(err)
	}
	if code != 302 || !strings.Contains(errText, "not followed") {
		t.Fatalf("redirect attempt = %d %q", code, errText)
	}
	if target.Count() != 0 {
		t.Fatalf("redirect target got %d requests", target.Count())
	}
	if n := sys.Count(t, `SELECT length(a.response_excerpt) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
		WHERE d.webhook_id = $1`, r2.ID); n != 64<<10 {
		t.Fatalf("response excerpt = %d bytes, want 65536", n)
	}
}
