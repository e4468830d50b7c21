package servicetest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerIdle reports whether the durable consumer of stream has nothing pending, nothing
// awaiting an ack and nothing being redelivered.
func (s *System) ConsumerIdle(tb testing.TB, stream, consumer string) bool {
	tb.Helper()
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		tb.Fatalf("consumer %s on %s: %v", consumer, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		tb.Fatalf("consumer %s info: %v", consumer, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
}
