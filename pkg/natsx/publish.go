package natsx

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/delivery"
)

// PublishDeliveries publishes one DELIVERIES message per queued delivery, all at once, and
// returns when JetStream acknowledged every one (or the first error). Each carries
// Nats-Msg-Id = delivery id + attempt, so publishing the same attempt twice stores it once.
func PublishDeliveries(ctx context.Context, js jetstream.JetStream, qs []delivery.Due) error {
	if len(qs) == 0 {
		return nil
	}
	acks := make([]jetstream.PubAckFuture, 0, len(qs))
	for _, q := range qs {
		id := q.ID.String()
		m := &nats.Msg{Subject: DeliverySubject(q.WebhookID.String()), Data: q.Payload, Header: nats.Header{
			nats.MsgIdHdr:    []string{DeliveryMsgID(id, q.Attempt, q.Key)},
			HeaderDeliveryID: []string{id},
			HeaderWebhookID:  []string{q.WebhookID.String()},
			HeaderEventType:  []string{q.EventType},
			HeaderAttempt:    []string{strconv.Itoa(q.Attempt)},
			HeaderOccurredAt: []string{strconv.FormatInt(q.OccurredAt.UnixNano(), 10)},
		}}
		if q.EventID != "" {
			m.Header.Set(HeaderEventID, q.EventID)
		}
		if q.UserID > 0 {
			m.Header.Set(HeaderUserID, strconv.FormatInt(q.UserID, 10))
		}
		if q.Key != "" {
			m.Header.Set(HeaderKey, q.Key)
		}
		if q.Seq > 0 {
			m.Header.Set(HeaderSeq, strconv.FormatInt(q.Seq, 10))
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish delivery %s: %w", id, err)
		}
		acks = append(acks, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish delivery: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("publish deliveries: no ack within 10s: %w", context.DeadlineExceeded)
		}
	}
	return nil
}
