package httpapi_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/store"
)

// TestRateLimitAcrossReplicas: two ingress replicas share one NATS and one PostgreSQL; one key
// hammers both at once. Together they admit at most what one bucket allows (the burst plus
// the rate times the time taken), not twice that.
func TestRateLimitAcrossReplicas(t *testing.T) {
	const limit = 20 // per second, and the burst
	sys := servicetest.Start(t, func(c *config.Config) { c.RateLimit = limit })
	key := apiKey(t, sys, 1)

	// A second replica: the ingress role alone, on the all-in-one's NATS and database.
	cfg := sys.Config
	cfg.NATSURL, cfg.HTTPAddr = sys.NATSURL, "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- service.Run(ctx, slog.New(slog.DiscardHandler), cfg, service.Ingress,
			service.Tuning{MaxDBConns: 4, Ready: func(addr, _ string) { ready <- "http://" + addr }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second ingress stopped with %v", err)
		}
	})
	var second string
	select {
	case second = <-ready:
	case err := <-done:
		t.Fatalf("second ingress did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("second ingress not ready after 60s")
	}

	const each = 150
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted = map[string]int{}
	)
	start := time.Now()
	for _, base := range []string{sys.URL, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				req, _ := http.NewRequest(http.MethodGet, base+"/event_type", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					mu.Lock()
					accepted[base]++
					mu.Unlock()
				case 429:
				default:
					t.Errorf("GET /event_type = %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := accepted[sys.URL] + accepted[second]
	// One bucket: the burst, plus the rate over the time taken, plus one for rounding.
	quota := limit + int(elapsed.Seconds()*limit) + 1
	t.Logf("%d requests in %v: %d accepted (%d + %d), one bucket's quota %d", 2*each, elapsed.Round(time.Millisecond),
		total, accepted[sys.URL], accepted[second], quota)
	if total > quota {
		t.Fatalf("two replicas admitted %d requests in %v; one key's quota is %d", total, elapsed, quota)
	}
	if total < limit/2 {
		t.Fatalf("only %d requests admitted; the burst alone is %d", total, limit)
	}
}

// TestRateLimitFastPath: one replica admits a key's requests from slices it takes from the
// shared bucket, a tenth of the rate at a time, so NATS sees one write per slice (plus one per
// second for a slice that expired), not one per request.
func TestRateLimitFastPath(t *testing.T) {
	const limit = 100
	sys := servicetest.Start(t, func(c *config.Config) { c.RateLimit = limit })
	key := apiKey(t, sys, 1)
	const n = 50 // within the burst: all admitted
	start := time.Now()
	for i := range n {
		if r := sys.Do(t, http.MethodGet, "/event_type", nil, "Authorization", "Bearer "+key); r.Status != 200 {
			t.Fatalf("request %d = %d, want 200 (within the burst of %d)", i, r.Status, limit)
		}
	}
	elapsed := time.Since(start)
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), natsx.QuotasBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), hex.EncodeToString(store.HashKey(key)))
	if err != nil {
		t.Fatal(err)
	}
	// The bucket holds this one key, so its revision counts the writes.
	writes := e.Revision()
	most := uint64(n/(limit/10) + int(elapsed.Seconds()) + 1)
	t.Logf("%d requests in %v: %d writes to the shared bucket", n, elapsed.Round(time.Millisecond), writes)
	if writes > most {
		t.Fatalf("%d requests made %d writes to the shared bucket, want at most %d (one per slice of %d)", n, writes, most, limit/10)
	}
}
