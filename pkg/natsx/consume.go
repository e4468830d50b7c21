package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumeBatches pulls from cons and calls handle with whatever has arrived, up to batchMax
// messages: one message when traffic is light, a full batch under load, never a fixed wait.
// workers batches run at once, so one batch's database round trips overlap the next one's.
// The in-memory buffer holds at most the consumer's MaxAckPending messages, so overload stays
// a JetStream backlog.
// When ctx ends it stops pulling, lets the batches in hand finish (handle gets a context that
// is not cancelled) and naks what was buffered, so another replica takes it at once.
//
// If nats.go stops consuming for good (the consumer was deleted by an operator), the consumer
// is re-created with reopen and consumption resumes (see KeepConsuming).
func ConsumeBatches(ctx context.Context, cons jetstream.Consumer, reopen Reopen, batchMax, workers int, log *slog.Logger,
	handle func(context.Context, []jetstream.Msg)) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	// The callback must never block: nats.go runs it on the subscription's goroutine, and a
	// blocked callback starves the pull bookkeeping until the heartbeat monitor resets it
	// (measured: a 30 s stall with 264 events left). The server delivers at most
	// MaxAckPending unacked messages, so a channel that size always has room.
	ch := make(chan jetstream.Msg, max(info.Config.MaxAckPending, batchMax))
	work := context.WithoutCancel(ctx)
	every := info.Config.AckWait * 2 / 5
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batchLoop(wctx, ch, batchMax, func(b []jetstream.Msg) { defer KeepAlive(every, b...)(); handle(work, b) })
		}()
	}
	cc, err := KeepConsuming(ctx, cons, reopen, log, func(m jetstream.Msg) { ch <- m },
		jetstream.PullMaxMessages(batchMax), PullExpiry, PullHeartbeat,
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Debug("consume", "err", err) // e.g. a missed heartbeat: the pull is re-issued
		}))
	if err != nil {
		stopWorkers()
		wg.Wait()
		return err
	}
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

// Pull requests expire after 5 s with a heartbeat every second (nats.go's defaults are 30 s and
// 15 s). Under a backlog we saw a pull request go missing now and then with the client still
// counting on it: nothing arrived until the heartbeat monitor noticed, 30 s later. With these
// the client notices within 2 s.
var (
	PullExpiry    = jetstream.PullExpiry(5 * time.Second)
	PullHeartbeat = jetstream.PullHeartbeat(time.Second)
)

// ConsumerCounts reads a consumer's pending and ack-pending counts, for the consumer gauges.
func ConsumerCounts(cons jetstream.Consumer) func(context.Context) (pending, ackPending uint64, err error) {
	return func(ctx context.Context) (uint64, uint64, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, 0, err
		}
		return info.NumPending, uint64(info.NumAckPending), nil
	}
}

// KeepAlive reports msgs in progress every interval (0 = never) until the returned stop is
// called, so a message held longer than its consumer's AckWait is not redelivered meanwhile.
func KeepAlive(every time.Duration, msgs ...jetstream.Msg) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		for _, m := range msgs {
			_ = m.InProgress()
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// consumerCheck is how often KeepConsuming makes sure its consumer still exists.
const consumerCheck = 2 * time.Second

// Reopen re-creates a durable consumer that disappeared and returns it.
type Reopen func(context.Context) (jetstream.Consumer, error)

// Reopener re-creates the streams and consumers of t (Setup: only what is missing or differs)
// and returns the consumer name of stream.
func Reopener(js jetstream.JetStream, t Topology, stream, name string) Reopen {
	return func(ctx context.Context) (jetstream.Consumer, error) {
		if err := Setup(ctx, js, t); err != nil {
			return nil, err
		}
		return js.Consumer(ctx, stream, name)
	}
}

// KeepConsuming consumes cons with handler until ctx ends, then stops and returns the last
// consume context (the caller waits for its Closed and drains). When nats.go stops consuming
// for good while ctx is alive (a deleted consumer is terminal for it), it re-creates the
// consumer with reopen (nil: look it up again) and consumes again, retrying every 1 s up to
// 16 s, with a warning at most every 10 s. Meanwhile the Consuming in ctx (WithConsuming), which
// /readyz reads, names it as not consuming.
func KeepConsuming(ctx context.Context, cons jetstream.Consumer, reopen Reopen, log *slog.Logger,
	handler jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	cc, err := cons.Consume(handler, opts...)
	if err != nil {
		return nil, err
	}
	status, name := consumingFrom(ctx), cons.CachedInfo().Name
	status.set(name, true)
	defer status.forget(name)
	var away Backoff
	// nats.go closes the consume context on some terminal errors only: a deleted consumer is
	// also noticed by looking it up now and then.
	check := time.NewTicker(consumerCheck)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			cc.Stop()
			return cc, nil
		case <-cc.Closed():
		case <-check.C:
			if _, err := cons.Info(ctx); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue
			}
			cc.Stop()
		}
		status.set(name, false)
		log.Warn("consuming stopped (consumer deleted?): re-creating it")
		for {
			if ctx.Err() != nil {
				return cc, nil
			}
			next, err := reopenConsumer(ctx, cons, reopen)
			if err == nil {
				var ncc jetstream.ConsumeContext
				if ncc, err = next.Consume(handler, opts...); err == nil {
					cc, cons = ncc, next
					status.set(name, true)
					away.OK()
					log.Info("consuming again")
					break
				}
			}
			wait, logNow, _ := away.Fail(time.Now())
			if logNow {
				log.Warn("re-create consumer", "err", err, "retry_in", wait.String())
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

func reopenConsumer(ctx context.Context, cons jetstream.Consumer, reopen Reopen) (jetstream.Consumer, error) {
	if reopen != nil {
		return reopen(ctx)
	}
	info := cons.CachedInfo()
	return nil, fmt.Errorf("consumer %s on %s: no way to re-create it", info.Name, info.Stream)
}

// Consuming says which of a process's consumers are consuming, for /readyz: KeepConsuming
// (given it in its ctx, see WithConsuming) marks its consumer not consuming from the moment
// nats.go stops until it consumes again. The zero value is ready.
type Consuming struct {
	mu      sync.Mutex
	stopped map[string]int // consumer name -> KeepConsuming loops of it not consuming
}

type consumingKey struct{}

// WithConsuming returns ctx carrying c, for the KeepConsuming calls made with it.
func WithConsuming(ctx context.Context, c *Consuming) context.Context {
	return context.WithValue(ctx, consumingKey{}, c)
}

func consumingFrom(ctx context.Context) *loopState {
	c, _ := ctx.Value(consumingKey{}).(*Consuming)
	return &loopState{c: c}
}

// loopState is one KeepConsuming loop's mark in a Consuming (nil: none).
type loopState struct {
	c       *Consuming
	stopped bool
}

func (l *loopState) set(name string, consuming bool) {
	if l.c == nil || consuming != l.stopped {
		return
	}
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.c.stopped == nil {
		l.c.stopped = map[string]int{}
	}
	l.stopped = !consuming
	if l.stopped {
		l.c.stopped[name]++
	} else {
		l.c.stopped[name]--
	}
}

// forget clears the loop's mark when it returns.
func (l *loopState) forget(name string) { l.set(name, true) }

// Err names the consumers not consuming, nil when every one is.
func (c *Consuming) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for name, n := range c.stopped {
		if n > 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return fmt.Errorf("not consuming: %s", strings.Join(names, ", "))
}

// OpenConsumer looks up the durable consumer name of stream, trying again (1 s doubling to
// 16 s, a warning at most every 10 s) while JetStream does not answer, as during a stream
// leader's election in a cluster, until ctx ends. A consumer that does not exist is an error
// at once: Setup makes it before the services run.
func OpenConsumer(ctx context.Context, js jetstream.JetStream, stream, name string, log *slog.Logger) (jetstream.Consumer, error) {
	var b Backoff
	for {
		try, cancel := context.WithTimeout(ctx, 5*time.Second) // a request lost while reconnecting
		cons, err := js.Consumer(try, stream, name)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil {
			return cons, err
		}
		wait, logNow, unlogged := b.Fail(time.Now())
		if logNow {
			log.Warn("consumer lookup failed: trying again", "stream", stream, "consumer", name, "err", err, "in", wait, "failed_unlogged", unlogged)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}
