// Package dispatcher consumes DELIVERIES: it signs and POSTs each delivery, records every
// attempt in PostgreSQL, acks once the record is committed, and schedules retries in
// PostgreSQL (next_attempt_at), never in JetStream, so a delivery waiting hours for its next
// attempt holds no consumer slot. A scheduler republishes due retries and a reconciler
// republishes deliveries whose message was lost.
package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/egress"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Options tune the dispatcher; zero values take the defaults of DESIGN §10.
type Options struct {
	Schedule            delivery.Schedule // attempts and waits; default delivery.DefaultSchedule
	EndpointConcurrency int               // requests in flight per webhook; default 32
	RetryAfterMax       time.Duration     // cap on a receiver's Retry-After; default 24h
	DisableAfter        time.Duration     // failing this long disables a webhook; default 120h
	ReconcileAfter      time.Duration     // a pending delivery this still is republished; default 10m
	ScanInterval        time.Duration     // how often due retries are looked for; default 250ms
	HandBackDelay       time.Duration     // wait of a delivery handed back by a saturated endpoint; default 1s
	BatchSize           int               // most outcomes committed together; default 512
	Writers             int               // outcome batches committing at once; default 4
	TargetTTL           time.Duration     // how long a webhook's settings are cached; default 1s
	ShutdownGrace       time.Duration     // in-flight attempts get this long on shutdown; default 5s
	IdleAfter           time.Duration     // a webhook's in-memory state unused this long is dropped; default 5m
	Sealer              *webhook.Sealer   // opens secrets stored encrypted; nil = stored in clear
	Reopen              natsx.Reopen      // re-creates the consumer if it is deleted (natsx.Reopener)
	// Lease, when set, runs the scheduler and the reconciler only on the replica holding it
	// (natsx.DispatcherLease), so N replicas query for due retries as often as one; nil: every
	// replica runs them (safe, SKIP LOCKED, but N times the polling).
	Lease *natsx.Lease
}

func (o *Options) defaults() {
	if len(o.Schedule) == 0 {
		o.Schedule = delivery.DefaultSchedule
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.RetryAfterMax, 24*time.Hour)
	set(&o.DisableAfter, 120*time.Hour)
	set(&o.ReconcileAfter, 10*time.Minute)
	set(&o.ScanInterval, 250*time.Millisecond)
	set(&o.HandBackDelay, time.Second)
	set(&o.TargetTTL, time.Second)
	set(&o.ShutdownGrace, 5*time.Second)
	set(&o.IdleAfter, 5*time.Minute)
	if o.EndpointConcurrency <= 0 {
		o.EndpointConcurrency = 32
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
}

// Dispatcher is the DELIVERIES consumer plus the retry scheduler and the reconciler. Any
// number of dispatchers share the durable consumer; the scheduler and the reconciler run on
// the one holding Options.Lease (or on all, splitting due retries with SKIP LOCKED).
type Dispatcher struct {
	db      *store.DB
	js      jetstream.JetStream
	nc      *nats.Conn // js's connection: the live tail's core publishes (writer.go)
	client  *egress.Client
	m       *metrics.Set
	log     *slog.Logger
	opts    Options
	targets *targetCache

	mu        sync.Mutex
	endpoints map[uuid.UUID]*endpoint

	// keepAliveEvery is how often a held message is reported in progress: AckWait is short
	// (10 s by default) so that after a crash the messages a dead dispatcher held come back
	// within seconds, and a worker that holds one longer (waiting for a slot, a slow
	// receiver) keeps it with InProgress.
	keepAliveEvery time.Duration
	away           natsx.Backoff // PostgreSQL failures on the message path
	// contactLost is when (unix ns) the consume last reported trouble reaching the consumer's
	// leader (missed heartbeats, a leadership change, a disconnect). A message received
	// before then may have been handed to another dispatcher meanwhile: its acks and
	// in-progress reports may not have arrived (a partition), so it is not attempted.
	contactLost atomic.Int64
}

// New builds a dispatcher.
func New(db *store.DB, js jetstream.JetStream, client *egress.Client, m *metrics.Set, log *slog.Logger, o Options) *Dispatcher {
	o.defaults()
	return &Dispatcher{db: db, js: js, nc: js.Conn(), client: client, m: m, log: log.With("component", "dispatcher"), opts: o,
		targets: newTargetCache(db, o.Sealer, o.TargetTTL), endpoints: map[uuid.UUID]*endpoint{}}
}

// Run consumes, schedules and reconciles until ctx ends; then it stops pulling, gives
// in-flight attempts ShutdownGrace to finish, records what finished, hands the rest back to
// JetStream and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	cons, err := natsx.OpenConsumer(ctx, d.js, natsx.DeliveriesStream, natsx.DispatchConsumer, d.log)
	if err != nil {
		return err
	}
	d.m.WatchConsumer(natsx.DispatchConsumer, natsx.ConsumerCounts(cons))
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	d.keepAliveEvery = info.Config.AckWait * 2 / 5
	w := newWriter(d, d.opts.BatchSize)
	g, gctx := errgroup.WithContext(ctx)
	for range d.opts.Writers {
		// Several writers, so one batch's commit overlaps the next batch's statement.
		g.Go(func() error { return w.run(gctx) })
	}
	g.Go(func() error { d.jobs(gctx); return nil })
	g.Go(func() error { d.sweep(gctx); return nil })
	g.Go(func() error {
		defer w.close() // after every worker has handed in its outcome
		return d.consume(gctx, cons, w, info.Config.MaxAckPending)
	})
	return g.Wait()
}

// consume starts one worker per message. JetStream's MaxAckPending bounds how many run.
func (d *Dispatcher) consume(ctx context.Context, cons jetstream.Consumer, w *writer, maxAckPending int) error {
	// Attempts run on a context that outlives ctx by ShutdownGrace, so a shutdown lets
	// short requests finish rather than cutting every one.
	attemptCtx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	var workers sync.WaitGroup
	buffer := min(max(maxAckPending, 1), 1024)
	cc, err := natsx.KeepConsuming(ctx, cons, d.opts.Reopen, d.log, func(m jetstream.Msg) {
		// The place at the endpoint is taken here, in order, before the worker starts, so a
		// burst cannot overshoot the limit; a fast endpoint that is full makes pulling wait.
		var (
			ep       *endpoint
			reserved bool
		)
		if id, err := uuid.Parse(m.Headers().Get(natsx.HeaderWebhookID)); err == nil {
			ep, reserved = d.place(ctx, id)
		}
		received := time.Now().UnixNano()
		workers.Add(1)
		go func() {
			defer workers.Done()
			d.handle(attemptCtx, m, w, ep, reserved, received)
		}()
	}, jetstream.PullMaxMessages(buffer), natsx.PullExpiry, natsx.PullHeartbeat, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		d.contactLost.Store(time.Now().UnixNano())
		d.log.Debug("consume", "err", err)
	}))
	if err != nil {
		return err
	}
	<-cc.Closed() // KeepConsuming returned: ctx ended and it stopped

	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.opts.ShutdownGrace):
		cancelAttempts() // the cancelled ones are nak-ed, not recorded
		<-done
	}
	return nil
}

// handle runs one delivery message to its outcome and hands it to the writer, which acks it
// once the outcome is committed. reserved says the message holds a place at its endpoint ep,
// which handle gives back. received is when it arrived (unix ns).
func (d *Dispatcher) handle(ctx context.Context, m jetstream.Msg, w *writer, ep *endpoint, reserved bool, received int64) {
	defer natsx.KeepAlive(d.keepAliveEvery, m)()
	attempting := false
	defer func() {
		if reserved && !attempting {
			ep.release()
		}
	}()
	msg, err := parseMessage(m)
	if err != nil {
		// Not ours to deliver (published by hand?): nothing in PostgreSQL refers to it.
		d.log.Error("unreadable delivery message, terminated", "subject", m.Subject(), "err", err)
		_ = m.TermWithReason("unreadable: " + err.Error())
		return
	}
	if d.mayBeStale(m, msg) {
		// Redelivered, reconciled or old: look at the row and skip an attempt that is no
		// longer due (already recorded), rather than POST it twice.
		dbCtx, cancel := context.WithTimeout(ctx, dbTimeout)
		due, err := store.AttemptDue(dbCtx, d.db, msg.ID, msg.Attempt, msg.Key)
		cancel()
		if err != nil {
			d.later(m, "check delivery", err)
			return
		}
		if !due {
			_ = m.Ack()
			return
		}
	}
	dbCtx, cancel := context.WithTimeout(ctx, dbTimeout)
	t, err := d.targets.get(dbCtx, msg.WebhookID)
	cancel()
	if err != nil {
		switch {
		case errors.Is(err, errGone):
			w.add(m, d.ended(msg, "webhook deleted"))
			return
		case errors.Is(err, webhook.ErrSealed):
			// Retrying cannot help until an operator restores the key; end it visibly
			// (error_log) rather than loop. POST /webhook/{id}/recover resends later.
			d.log.Error("webhook secret cannot be decrypted", "webhook_id", msg.WebhookID, "err", err)
			w.add(m, d.ended(msg, err.Error()))
			return
		}
		d.later(m, "load webhook", err)
		return
	}
	d.away.OK()
	if !t.enabled {
		w.add(m, d.ended(msg, "webhook disabled"))
		return
	}
	if !reserved {
		w.add(m, d.handBack(msg, ep))
		return
	}
	if msg.Seq > 0 {
		// A FIFO delivery takes the slot in stream order among those held here: the workers'
		// goroutines would otherwise race for it, and a later one would find an earlier one
		// still pending and go round through PostgreSQL.
		if !ep.awaitTurn(ctx, msg.Seq) {
			_ = m.Nak()
			return
		}
		defer ep.doneTurn(msg.Seq)
	}
	switch ep.enter(ctx, d.m.Waiting) {
	case entered:
	case waited:
		_ = m.InProgress() // the wait for a slot counts against AckWait
	case cancelled:
		_ = m.Nak()
		return
	}
	// FIFO as the webhook says now, or as it said when the delivery was made.
	fifo := t.fifo || msg.Seq > 0
	if fifo {
		// Only when no earlier delivery of this webhook is still pending or retrying.
		// The slot (one per FIFO webhook) is held meanwhile, so no two deliveries of it
		// check and post at once.
		dbCtx, cancel := context.WithTimeout(ctx, dbTimeout)
		blocked, until, err := store.EarlierOutstanding(dbCtx, d.db, msg.ID)
		cancel()
		if err != nil || blocked {
			ep.leave()
			attempting = true // leave gave the place back
			if err != nil {
				d.later(m, "check FIFO order", err)
				return
			}
			w.add(m, d.waitTurn(msg, ep, until))
			return
		}
	}
	if d.contactLost.Load() > received {
		// Contact with the consumer's leader was lost while this message waited here: a new
		// leader (or the same, its in-progress reports lost) may have handed it to another
		// dispatcher. Not attempted; JetStream redelivers it (NumDelivered > 1, so the
		// redelivery checks PostgreSQL first).
		ep.leave()
		attempting = true                        // leave gave the place back
		_ = m.NakWithDelay(d.opts.HandBackDelay) // a heartbeat missed on a busy machine is not a storm
		return
	}
	attempting = true // leave gives the place back
	out, ok := d.attempt(ctx, msg, t)
	fifo = fifo && ok
	if fifo {
		// The next FIFO delivery checks this one's row as soon as it gets the slot: record
		// the outcome (and ack) before the slot is given up. One commit per delivery is the
		// price of strict order.
		if w.commit(ctx, []store.Outcome{out}) {
			fault("after_commit")
			w.ack(m)
			var tail tailBuffer
			tail.publish(d.nc, m.Headers(), &out)
		}
	}
	ep.leave()
	if !ok {
		_ = m.Nak() // cut by shutdown: not an attempt of the receiver's making
		return
	}
	ep.observe(out.Latency)
	if out.Status != delivery.StatusSucceeded {
		d.targets.markFailing(msg.WebhookID)
	}
	if !fifo {
		w.add(m, out)
	}
}

// dbTimeout bounds each PostgreSQL read on the message path.
const dbTimeout = 5 * time.Second

// later hands m back to JetStream because PostgreSQL did not answer: redelivered after a wait
// that grows from 1 s to 16 s while the failures go on, logged at most once per 10 s.
func (d *Dispatcher) later(m jetstream.Msg, what string, err error) {
	wait, logNow, unlogged := d.away.Fail(time.Now())
	if logNow {
		d.log.Warn("PostgreSQL unavailable, deliveries wait", "during", what, "err", err,
			"retry_in", wait.String(), "failures_not_logged", unlogged)
	}
	_ = m.NakWithDelay(wait)
}

// message is a parsed DELIVERIES message.
type message struct {
	delivery.Due
}

func parseMessage(m jetstream.Msg) (message, error) {
	h := m.Headers()
	var (
		msg message
		err error
	)
	if msg.ID, err = uuid.Parse(h.Get(natsx.HeaderDeliveryID)); err != nil {
		return msg, errors.New("bad " + natsx.HeaderDeliveryID)
	}
	if msg.WebhookID, err = uuid.Parse(h.Get(natsx.HeaderWebhookID)); err != nil {
		return msg, errors.New("bad " + natsx.HeaderWebhookID)
	}
	if msg.Attempt, err = strconv.Atoi(h.Get(natsx.HeaderAttempt)); err != nil || msg.Attempt < 1 {
		return msg, errors.New("bad " + natsx.HeaderAttempt)
	}
	ns, err := strconv.ParseInt(h.Get(natsx.HeaderOccurredAt), 10, 64)
	if err != nil {
		return msg, errors.New("bad " + natsx.HeaderOccurredAt)
	}
	msg.OccurredAt = time.Unix(0, ns)
	msg.EventType = h.Get(natsx.HeaderEventType)
	msg.EventID = h.Get(natsx.HeaderEventID)
	msg.Key = h.Get(natsx.HeaderKey)
	if s := h.Get(natsx.HeaderSeq); s != "" {
		msg.Seq, _ = strconv.ParseInt(s, 10, 64)
	}
	msg.Payload = m.Data()
	return msg, nil
}

// mayBeStale reports a message whose attempt may already have been made: a redelivery (the
// process that held it may have posted and recorded it, then died or lost the ack), a copy
// from the reconciler, or one published long enough ago that the reconciler may have sent a
// copy. Only these cost a look at PostgreSQL before the POST.
func (d *Dispatcher) mayBeStale(m jetstream.Msg, msg message) bool {
	if strings.HasPrefix(msg.Key, "r") {
		return true
	}
	md, err := m.Metadata()
	return err != nil || md.NumDelivered > 1 || time.Since(md.Timestamp) > d.opts.ReconcileAfter/2
}

// ended is the outcome of a delivery whose webhook can no longer receive: failed, no attempt.
func (d *Dispatcher) ended(msg message, why string) store.Outcome {
	d.m.Deliveries.WithLabelValues("failed").Inc()
	return store.Outcome{DeliveryID: msg.ID, WebhookID: msg.WebhookID, Attempt: msg.Attempt,
		Status: delivery.StatusFailed, Error: why, At: time.Now()}
}

// waitTurn hands a FIFO delivery back without using an attempt because an earlier one of its
// webhook is not done: it comes back after that one's next attempt (until, when it waits for a
// retry), else soon, spread at the webhook's pace.
func (d *Dispatcher) waitTurn(msg message, ep *endpoint, until *time.Time) store.Outcome {
	next := ep.handBackAt(time.Now(), fifoRecheck)
	if until != nil && until.Add(fifoRecheck).After(next) {
		next = until.Add(fifoRecheck)
	}
	return store.Outcome{DeliveryID: msg.ID, WebhookID: msg.WebhookID, Attempt: msg.Attempt,
		Status: delivery.StatusRetrying, NextAttemptAt: &next, At: time.Now()}
}

// fifoRecheck is how soon a FIFO delivery that had to wait for an earlier one looks again.
const fifoRecheck = 100 * time.Millisecond

// handBack returns a delivery to the retry mechanism without using an attempt: its endpoint
// already has every slot busy and every waiting place taken.
func (d *Dispatcher) handBack(msg message, ep *endpoint) store.Outcome {
	d.m.RetriesScheduled.Inc()
	next := ep.handBackAt(time.Now(), d.opts.HandBackDelay)
	return store.Outcome{DeliveryID: msg.ID, WebhookID: msg.WebhookID, Attempt: msg.Attempt,
		Status: delivery.StatusRetrying, NextAttemptAt: &next, At: time.Now()}
}
