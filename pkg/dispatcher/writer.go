package dispatcher

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
)

// writer commits outcomes in batches — whatever has queued, up to a batch size, never a fixed
// wait — and acks each message only after its outcome is committed.
type writer struct {
	d    *Dispatcher
	max  int
	ch   chan pending
	away natsx.Backoff // shared by the writer goroutines
	acks natsx.Backoff // acks that could not be sent: logged at most once per 10 s
}

type pending struct {
	msg jetstream.Msg
	out store.Outcome
}

func newWriter(d *Dispatcher, max int) *writer {
	return &writer{d: d, max: max, ch: make(chan pending, max)}
}

func (w *writer) add(m jetstream.Msg, out store.Outcome) { w.ch <- pending{m, out} }

// close is called once no worker will add any more; run then flushes and returns.
func (w *writer) close() { close(w.ch) }

// run writes until close; ctx ending only stops it retrying a batch PostgreSQL refuses.
func (w *writer) run(ctx context.Context) error {
	batch := make([]pending, 0, w.max)
	outs := make([]store.Outcome, 0, w.max)
	msgs := make([]jetstream.Msg, 0, w.max)
	var tail tailBuffer
	for first := range w.ch {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < w.max {
			select {
			case p, ok := <-w.ch:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		outs, msgs = outs[:0], msgs[:0]
		for _, p := range batch {
			outs, msgs = append(outs, p.out), append(msgs, p.msg)
		}
		// The messages stay held while PostgreSQL is slow or away (commit retries), so
		// JetStream does not hand them to another worker meanwhile.
		stop := natsx.KeepAlive(w.d.keepAliveEvery, msgs...)
		committed := w.commit(ctx, outs)
		stop()
		if !committed {
			continue // not recorded: unacked, JetStream redelivers them after AckWait
		}
		fault("after_commit")
		for _, m := range msgs {
			w.ack(m)
		}
		for i := range batch {
			tail.publish(w.d.nc, batch[i].msg.Headers(), &batch[i].out)
		}
	}
	return nil
}

// ack acknowledges a message whose outcome is committed. The row is the truth: an ack that is
// lost on its way (or not sent, counted and logged here) only means a redelivery, which
// handle checks against the row (store.AttemptDue) and acks without a second POST.
func (w *writer) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		w.d.m.AcksFailed.WithLabelValues(natsx.DispatchConsumer).Inc()
		if _, logNow, unlogged := w.acks.Fail(time.Now()); logNow {
			w.d.log.Warn("ack not sent; the message will be redelivered and found recorded", "err", err,
				"failures_not_logged", unlogged)
		}
		return
	}
	w.acks.OK()
}

// commit retries until PostgreSQL takes the batch: the messages stay unacked meanwhile, and
// JetStream's MaxAckPending stops new work from piling up. Once ctx has ended (shutdown) it
// tries once more and gives up, reporting false. An outcome PostgreSQL refuses for its data
// is found by splitting the batch and recorded with its texts replaced (see refused), so what
// a receiver answers can never wedge the writer.
func (w *writer) commit(ctx context.Context, outs []store.Outcome) bool {
	for {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := w.record(wctx, outs)
		cancel()
		if err == nil {
			w.away.OK()
			return true
		}
		if ctx.Err() != nil {
			w.d.log.Warn("outcomes not recorded at shutdown; their messages will be redelivered", "outcomes", len(outs), "err", err)
			return false
		}
		// The messages stay held (kept alive) meanwhile; the wait grows to 16 s, and the
		// outage is logged once per 10 s, not once per batch.
		wait, logNow, unlogged := w.away.Fail(time.Now())
		if logNow {
			w.d.log.Warn("record outcomes, will retry", "outcomes", len(outs), "err", err, "retry_in", wait.String(),
				"failures_not_logged", unlogged)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// record writes outs, splitting around outcomes PostgreSQL refuses.
func (w *writer) record(ctx context.Context, outs []store.Outcome) error {
	var refused []store.Outcome
	write := func(part []store.Outcome) error {
		disabled, err := store.RecordOutcomes(ctx, w.d.db, part, w.d.opts.DisableAfter)
		for id, reason := range disabled {
			w.d.m.EndpointsDisabled.WithLabelValues(reason).Inc()
			w.d.log.Error("webhook disabled", "webhook_id", id, "reason", reason)
		}
		return err
	}
	err := store.Split(outs, write, func(o store.Outcome, err error) {
		w.d.log.Error("outcome refused by PostgreSQL, recorded without its texts", "delivery_id", o.DeliveryID, "err", err)
		o.Error, o.Response = "outcome not recordable as received: "+store.DataErrorText(err), ""
		refused = append(refused, o)
	})
	if err != nil {
		return err
	}
	return store.Split(refused, write, func(o store.Outcome, err error) {
		// Even the plain record is refused: a bug, not the receiver's doing. The message is
		// acked anyway, so it is not redelivered forever.
		w.d.log.Error("outcome not recorded", "delivery_id", o.DeliveryID, "err", err)
	})
}

// tailBuffer publishes committed attempts for the live tail (GET /attempts/stream): one core
// NATS publish per attempt on natsx.AppendAttemptSubject, the body a delivery.Record encoded
// by hand into buffers reused across batches. Nothing waits for a reader: with no subscriber
// the server drops the message, and a slow tail is the ingress's problem, never the
// dispatcher's. A publish that fails (the connection is reconnecting and its buffer full) is
// not retried: the tail is a view, the row is the record.
type tailBuffer struct{ subject, body []byte }

func (t *tailBuffer) publish(nc *nats.Conn, h nats.Header, o *store.Outcome) {
	if nc == nil || !o.Attempted {
		return // an outcome without a request (handed back, webhook gone) is no attempt
	}
	user, err := strconv.ParseInt(h.Get(natsx.HeaderUserID), 10, 64)
	if err != nil || user <= 0 {
		return // published before deliveries carried their user: no subject to route it on
	}
	r := delivery.Record{DeliveryID: o.DeliveryID, WebhookID: o.WebhookID, EventID: h.Get(natsx.HeaderEventID),
		EventType: h.Get(natsx.HeaderEventType), Attempt: o.Attempt, Status: o.Status, StatusCode: o.StatusCode, Error: o.Error}
	t.body = delivery.AppendRecord(t.body[:0], &r, o.Latency, o.At)
	t.subject = natsx.AppendAttemptSubject(t.subject[:0], user, o.WebhookID.String())
	_ = nc.Publish(string(t.subject), t.body) // copied into the connection's buffer before it returns
}
