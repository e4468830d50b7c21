// Package natsx owns Hookline's use of NATS JetStream: stream, consumer and bucket names and
// configurations, connecting, and publishing with Nats-Msg-Id. Services share these durable
// consumers, so any number of replicas split the work.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of streams, subjects, durable consumers and the object store bucket.
const (
	EventsStream      = "EVENTS"
	EventsSubjects    = "events.>"
	DeliveriesStream  = "DELIVERIES"
	DeliveriesPrefix  = "deliveries."
	ProcessorConsumer = "processor"
	DispatchConsumer  = "dispatcher"
	FilesBucket       = "hookline-files"
)

// Headers of a DELIVERIES message. Its body is the rendered webhook body.
const (
	HeaderDeliveryID = "Hookline-Delivery-Id"
	HeaderWebhookID  = "Hookline-Webhook-Id"
	HeaderEventType  = "Hookline-Event-Type"
	HeaderAttempt    = "Hookline-Attempt"
	HeaderOccurredAt = "Hookline-Occurred-At" // unix nanoseconds, for end-to-end latency
	HeaderKey        = "Hookline-Key"         // delivery.Due.Key: which scheduling of the attempt
	HeaderSeq        = "Hookline-Seq"         // delivery.Due.Seq: a FIFO delivery's place in order
	HeaderEventID    = "Hookline-Event-Id"    // delivery.Due.EventID, for the live tail
	HeaderUserID     = "Hookline-User-Id"     // delivery.Due.UserID: the webhook's user, for the tail's subject
)

// DeliverySubject is the subject of one webhook's deliveries.
func DeliverySubject(webhookID string) string { return DeliveriesPrefix + webhookID }

// DeliveryMsgID is the Nats-Msg-Id of one scheduling of attempt n of a delivery: a republish
// of the same scheduling inside the duplicate window is dropped by the stream, while a new
// scheduling of the same attempt (handed back by a saturated endpoint, retried by API,
// reconciled) carries a new key and goes through.
func DeliveryMsgID(deliveryID string, attempt int, key string) string {
	if key == "" {
		return fmt.Sprintf("%s:%d", deliveryID, attempt)
	}
	return fmt.Sprintf("%s:%d:%s", deliveryID, attempt, key)
}

// Connect dials NATS at url (credentials may be in the URL), or in process when srv is not nil,
// which skips the loopback TCP round trip of the all-in-one. It reconnects forever: a NATS
// restart must not end the service.
func Connect(url string, srv nats.InProcessConnProvider, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	}
	if srv != nil {
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

// Topology holds the settings of Hookline's streams and consumers.
type Topology struct {
	Replicas    int           // stream replicas: 1 on one server, 3 on a cluster
	EventMaxAge time.Duration // how long EVENTS keeps a message (retention of events)
	// AckWait of both consumers: how soon the messages held by a process that died come back.
	// A worker that holds a message longer reports it in progress (the dispatcher every
	// 2/5 of it, while it waits for a slot or a slow receiver).
	DispatchAckWait, ProcessAckWait time.Duration
	DispatchMaxAckPending           int // deliveries in flight across all dispatchers
	ProcessMaxAckPending            int
}

// DefaultTopology is sized for one server and a 15 s receiver timeout.
func DefaultTopology() Topology {
	return Topology{Replicas: 1, EventMaxAge: 7 * 24 * time.Hour, DispatchAckWait: 10 * time.Second, ProcessAckWait: 10 * time.Second,
		DispatchMaxAckPending: 4096, ProcessMaxAckPending: 4096}
}

// Setup creates or updates the streams, consumers and object store bucket. Every service calls
// it at start, so start order does not matter and a changed setting takes effect on deploy.
func Setup(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if t.Replicas < 1 {
		t.Replicas = 1
	}
	streams := []jetstream.StreamConfig{{
		Name:        EventsStream,
		Description: "events from the ingress and other services, events.<type>",
		Subjects:    []string{EventsSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      t.EventMaxAge,
		Duplicates:  min(2*time.Minute, t.EventMaxAge), // the window may not exceed MaxAge
		Replicas:    t.Replicas,
	}, {
		Name:        DeliveriesStream,
		Description: "one message per delivery attempt due now; PostgreSQL keeps the state",
		Subjects:    []string{DeliveriesPrefix + ">"},
		Storage:     jetstream.FileStorage,
		// Work queue: a delivery message is gone once acked; waits for retries live in
		// PostgreSQL (next_attempt_at), never here.
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: 2 * time.Minute,
		Replicas:   t.Replicas,
	}}
	// Create first and update only a stream or consumer whose settings differ: replicas that
	// start together then leave an existing stream alone. (An update racing a consumer
	// create is a data race inside nats-server 2.15 that -race reports.)
	for _, cfg := range streams {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return fmt.Errorf("set up stream %s: %w", cfg.Name, err)
			}
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("update stream %s: %w", cfg.Name, err)
			}
		}
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{{EventsStream, jetstream.ConsumerConfig{
		Durable:       ProcessorConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.ProcessAckWait,
		MaxDeliver:    -1, // a message the processor cannot handle is recorded and Termed, not dropped
		MaxAckPending: t.ProcessMaxAckPending,
	}}, {DeliveriesStream, jetstream.ConsumerConfig{
		Durable:   DispatchConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A worker holding a message longer than AckWait (waiting for its endpoint's slot, a
		// slow receiver) reports it in progress, so one delivery never runs twice at once.
		AckWait:       t.DispatchAckWait,
		MaxDeliver:    -1, // attempts are counted in PostgreSQL, not by redeliveries
		MaxAckPending: t.DispatchMaxAckPending,
	}}}
	for _, c := range consumers {
		if _, err := js.CreateConsumer(ctx, c.stream, c.cfg); err != nil {
			if !errors.Is(err, jetstream.ErrConsumerExists) {
				return fmt.Errorf("set up consumer %s: %w", c.cfg.Durable, err)
			}
			if _, err := js.UpdateConsumer(ctx, c.stream, c.cfg); err != nil {
				return fmt.Errorf("update consumer %s: %w", c.cfg.Durable, err)
			}
		}
	}
	_, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      FilesBucket,
		Description: "uploaded files",
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		err = nil // kept as it is: a bucket's settings are changed by an operator
	}
	if err != nil {
		return fmt.Errorf("set up object store %s: %w", FilesBucket, err)
	}
	return nil
}

// Ready reports whether the streams and consumers exist, for /readyz.
func Ready(ctx context.Context, js jetstream.JetStream) error {
	for stream, consumer := range map[string]string{EventsStream: ProcessorConsumer, DeliveriesStream: DispatchConsumer} {
		if _, err := js.Consumer(ctx, stream, consumer); err != nil {
			return fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
		}
	}
	return nil
}
