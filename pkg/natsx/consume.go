package natsx

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumeBatches pulls from cons and calls handle with whatever has arrived, up to max
// messages: one message when traffic is light, a full batch under load, never a fixed wait.
// workers batches run at once, so one batch's database round trips overlap the next one's.
// The in-memory buffer holds at most 2*max messages, so overload stays a JetStream backlog.
// When ctx ends it stops pulling, lets the batches in hand finish (handle gets a context that
// is not cancelled) and naks what was buffered, so another replica takes it at once.
func ConsumeBatches(ctx context.Context, cons jetstream.Consumer, max, workers int, log *slog.Logger,
	handle func(context.Context, []jetstream.Msg)) error {
	ch := make(chan jetstream.Msg, max)
	cc, err := cons.Consume(func(m jetstream.Msg) { ch <- m },
		jetstream.PullMaxMessages(max),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Debug("consume", "err", err) // heartbeats missed during a NATS restart; it resumes
		}))
	if err != nil {
		return err
	}
	work := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i := 1; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batchLoop(ctx, ch, max, func(b []jetstream.Msg) { handle(work, b) })
		}()
	}
	batchLoop(ctx, ch, max, func(b []jetstream.Msg) { handle(work, b) })
	wg.Wait()
	cc.Stop()
	// The callback may be blocked sending a message it already holds: drain until the
	// consumer has closed, nak-ing so the messages are redelivered at once.
	for {
		select {
		case m := <-ch:
			_ = m.Nak()
		case <-cc.Closed():
			for {
				select {
				case m := <-ch:
					_ = m.Nak()
				default:
					return nil
				}
			}
		case <-time.After(5 * time.Second):
			return nil
		}
	}
}

// batchLoop takes batches off ch until ctx ends.
func batchLoop(ctx context.Context, ch chan jetstream.Msg, max int, handle func([]jetstream.Msg)) {
	batch := make([]jetstream.Msg, 0, max)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			batch = append(batch[:0], m)
		fill:
			for len(batch) < max {
				select {
				case m := <-ch:
					batch = append(batch, m)
				default:
					break fill
				}
			}
			handle(batch)
		}
	}
}
