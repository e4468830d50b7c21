package natsx_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
)

// A consumer looked up while JetStream does not answer (the server away, as a stream leader's
// node during an election) is found once it answers again, instead of the service exiting on
// the first timeout; a consumer that does not exist is an error at once.
func TestOpenConsumerWaitsForJetStream(t *testing.T) {
	dir := t.TempDir()
	first := natstest.StartWith(t, func(o *server.Options) { o.StoreDir = dir })
	port := first.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(first.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := natsx.OpenConsumer(ctx, js, "S", "missing", log); err == nil {
		t.Fatal("a missing consumer was opened")
	}

	first.Shutdown()
	first.WaitForShutdown()
	found := make(chan error, 1)
	go func() {
		short, stop := context.WithTimeout(ctx, 30*time.Second)
		defer stop()
		_, err := natsx.OpenConsumer(short, js, "S", "c", log)
		found <- err
	}()
	time.Sleep(1500 * time.Millisecond) // at least one lookup fails while the server is away
	natstest.StartWith(t, func(o *server.Options) { o.StoreDir = dir; o.Port = port })
	if err := <-found; err != nil {
		t.Fatalf("OpenConsumer after the server came back: %v", err)
	}
}
