package service_test

import (
	"context"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service/servicetest"
)

// Issue 10, hostile tenants: an attempt's error, as stored and as GET /deliveries/{id} shows
// it, says what failed ("connection refused") and not the address the receiver's host
// resolved to, which could be an internal one. The receiver is a closed port on 127.0.0.1
// (servicetest allows loopback targets, as HOOKLINE_ALLOW_PRIVATE_TARGETS=true does).
func TestAttemptErrorHidesAddress(t *testing.T) {
	sys := servicetest.Start(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // nothing listens there now: every attempt is refused
	w := sys.Register(t, 1, target, nil)
	if r := sys.Do(t, "POST", "/events", map[string]any{"type": "upload.completed", "user_id": 1, "data": map[string]any{}}); r.Status != 200 {
		t.Fatalf("POST /events = %d %s", r.Status, r.Raw)
	}
	servicetest.Eventually(t, 30*time.Second, "a failed attempt", func() bool {
		return sys.Count(t, `SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
			WHERE d.webhook_id = $1 AND a.error IS NOT NULL`, w.ID) > 0
	})
	var deliveryID, stored string
	if err := sys.DB.QueryRowContext(context.Background(), `SELECT d.id, a.error FROM delivery_attempts a
		JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1 AND a.error IS NOT NULL LIMIT 1`, w.ID).Scan(&deliveryID, &stored); err != nil {
		t.Fatal(err)
	}
	if stored != "connection refused" {
		t.Errorf("stored attempt error = %q, want %q", stored, "connection refused")
	}
	r := sys.Do(t, "GET", "/deliveries/"+deliveryID, nil)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	address := regexp.MustCompile(`127\.0\.0\.1|:` + port + `\b`)
	if r.Status != 200 || address.Match(r.Data) || !regexp.MustCompile(`"error":"connection refused"`).Match(r.Data) {
		t.Errorf("GET /deliveries/%s = %d %s, want the attempt's error \"connection refused\" and no address", deliveryID, r.Status, r.Data)
	}
}
