package service_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// The processor's prune pass keeps at most HOOKLINE_REJECTED_PER_USER rejected events per user:
// five rejections of user 1 end as two rows. (Which two is store.PruneRejected's test: the
// processor's batches may commit these five in any order.)
func TestRejectedEventsCappedPerUser(t *testing.T) {
	cfg := servicetest.NewConfig(t, func(c *config.Config) { c.RejectedPerUser = 2 })
	sys := servicetest.StartConfig(t, cfg, service.Tuning{PruneEvery: 50 * time.Millisecond})
	for i := range 5 {
		r := sys.Do(t, http.MethodPost, "/events", map[string]any{"id": fmt.Sprintf("rej-%d", i), "type": "no.such.type",
			"user_id": 1, "data": map[string]any{}})
		if r.Status != 200 {
			t.Fatalf("POST /events = %d %s", r.Status, r.Raw)
		}
	}
	servicetest.Eventually(t, 20*time.Second, "5 events rejected", func() bool {
		v, _ := sample(scrape(t, sys), "hookline_events_rejected_total", "reason", "unknown_type")
		return v == 5
	})
	servicetest.Eventually(t, 20*time.Second, "user 1's rejected events capped at its newest 2", func() bool {
		return sys.Count(t, "SELECT count(*) FROM rejected_events WHERE user_id = 1") == 2
	})
}
