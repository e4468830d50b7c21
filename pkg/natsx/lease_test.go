package natsx_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
)

// contender is one process contending for a lease: its own connection, so closing it is the
// process dying (no clean hand-over).
type contender struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// TestLeaseOneLeaderAndHandOver: three contenders, exactly one leads and keeps the lease while
// it renews; when the leader dies another takes over once its entry ages out; when that one
// stops cleanly the last takes over.
func TestLeaseOneLeaderAndHandOver(t *testing.T) {
	srv := natstest.Start(t)
	const ttl = 3 * time.Second
	log := slog.New(slog.DiscardHandler)

	var mu sync.Mutex
	leading := map[int]bool{}
	holders := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var ids []int
		for id, on := range leading {
			if on {
				ids = append(ids, id)
			}
		}
		return ids
	}
	cs := make([]*contender, 3)
	for i := range cs {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := natsx.SetupLeases(t.Context(), js, ttl, 1)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		c := &contender{nc: nc, cancel: cancel, done: make(chan struct{})}
		cs[i] = c
		l := natsx.NewLease(kv, natsx.DispatcherLease, "replica-"+string(rune('a'+i)), ttl, log)
		go func() {
			defer close(c.done)
			l.Run(ctx, func(ctx context.Context) {
				mu.Lock()
				leading[i] = true
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				leading[i] = false
				mu.Unlock()
			})
		}()
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.cancel()
			<-c.done
			c.nc.Close()
		}
	})

	first := waitLeader(t, holders, -1)
	// Through several renewals (3 per TTL), still exactly that one.
	for range 4 {
		time.Sleep(ttl / 2)
		if got := holders(); len(got) != 1 || got[0] != first {
			t.Fatalf("holders = %v, want only %d", got, first)
		}
	}

	// Kill the leader: its connection goes, it neither renews nor deletes.
	killed := time.Now()
	cs[first].nc.Close()
	second := waitLeader(t, holders, first)
	t.Logf("after the leader died, replica %d took over in %v (TTL %v)", second, time.Since(killed).Round(10*time.Millisecond), ttl)

	// Stop the new leader cleanly: it deletes its entry, the third takes over.
	cs[second].cancel()
	<-cs[second].done
	third := waitLeader(t, holders, first)
	if third == second {
		t.Fatalf("replica %d still leads after it stopped", second)
	}
}

// waitLeader waits until exactly one contender other than not leads, and returns it.
func waitLeader(t *testing.T, holders func() []int, not int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		got := holders()
		if len(got) > 1 {
			t.Fatalf("two leaders at once: %v", got)
		}
		if len(got) == 1 && got[0] != not {
			return got[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader after 60s (holders %v)", holders())
	return -1
}
