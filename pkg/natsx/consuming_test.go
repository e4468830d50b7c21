package natsx_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
)

// A consumer deleted under KeepConsuming makes its Consuming (what /readyz reads) name it
// until it consumes again: here, until re-creating it is allowed.
func TestConsumingNamesAStoppedConsumer(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.ConsumerConfig{Durable: "work", AckPolicy: jetstream.AckExplicitPolicy}
	cons, err := st.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var allow atomic.Bool
	reopen := func(ctx context.Context) (jetstream.Consumer, error) {
		if !allow.Load() {
			return nil, errors.New("not yet")
		}
		return st.CreateOrUpdateConsumer(ctx, cfg)
	}
	var consuming natsx.Consuming
	cctx, cancel := context.WithCancel(natsx.WithConsuming(ctx, &consuming))
	done := make(chan struct{})
	go func() {
		defer close(done)
		cc, err := natsx.KeepConsuming(cctx, cons, reopen, slog.New(slog.NewTextHandler(io.Discard, nil)),
			func(m jetstream.Msg) { _ = m.Ack() })
		if err != nil {
			t.Error(err)
			return
		}
		<-cc.Closed()
	}()
	defer func() { cancel(); <-done }()
	if err := consuming.Err(); err != nil {
		t.Fatalf("consuming: %v", err)
	}

	if err := st.DeleteConsumer(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a stopped consumer to be named", func() bool {
		err := consuming.Err()
		return err != nil && strings.Contains(err.Error(), "work")
	})
	allow.Store(true)
	waitFor(t, "consuming again", func() bool { return consuming.Err() == nil })
	if _, err := js.Publish(ctx, "s.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message to be consumed", func() bool {
		c, err := st.Consumer(ctx, "work")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream == 1
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
