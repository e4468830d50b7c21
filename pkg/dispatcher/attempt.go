package dispatcher

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/egress"
	"github.com/hookline/hookline/pkg/store"
)

// attempt signs and sends one attempt and decides what follows: done, retry at a time, or
// failed. ok is false when the attempt was cut by shutdown (ctx cancelled).
func (d *Dispatcher) attempt(ctx context.Context, msg message, t *target) (store.Outcome, bool) {
	id := msg.ID.String()
	now := time.Now()
	// The timestamp and signature are computed per attempt (verifiers refuse old
	// timestamps); the body is the same bytes on every attempt.
	res := d.client.Do(ctx, egress.Request{
		URL:       t.url,
		Headers:   t.headers[msg.EventType],
		ID:        id,
		Timestamp: strconv.FormatInt(now.Unix(), 10),
		Signature: t.signer.Sign(id, now, msg.Payload),
		Body:      msg.Payload,
		Timeout:   t.timeout, // the webhook's own timeout_ms, else the client's default
	})
	if res.Err != nil && ctx.Err() != nil {
		return store.Outcome{}, false
	}
	fault("after_post")
	end := time.Now()
	d.m.AttemptDuration.Observe(res.Latency.Seconds())
	out := store.Outcome{DeliveryID: msg.ID, WebhookID: msg.WebhookID, Attempt: msg.Attempt, Attempted: true,
		StatusCode: res.StatusCode, Latency: res.Latency, Response: excerpt(res.Body), At: end,
		// A FIFO webhook's successes are written with an UPDATE, so they leave the index of
		// deliveries not done that its next delivery checks.
		Fresh: msg.Key == "" && msg.Attempt == 1 && msg.Seq == 0 && !t.fifo, WebhookFailing: t.failing.Load()}
	if res.Err != nil {
		out.Error = errorText(res.Err)
	}
	switch code := res.StatusCode; {
	case res.Err == nil && code >= 200 && code < 300:
		out.Status = delivery.StatusSucceeded
		d.m.Deliveries.WithLabelValues("succeeded").Inc()
		d.m.EndToEnd.Observe(end.Sub(msg.OccurredAt).Seconds())
		return out, true
	case code == 410:
		// Standard Webhooks: 410 Gone means "stop sending": the delivery ends and the
		// webhook is disabled at once.
		out.Status = delivery.StatusFailed
		out.Error = "receiver answered 410 Gone"
		out.DisableWebhook = "receiver answered 410 Gone"
		d.m.Deliveries.WithLabelValues("failed").Inc()
		return out, true
	case code >= 300 && code < 400:
		out.Error = fmt.Sprintf("redirect to %q not followed", res.Location)
	}
	wait, more := d.opts.Schedule.Backoff(msg.Attempt, res.StatusCode, res.RetryAfter, d.opts.RetryAfterMax, end, nil)
	if !more {
		out.Status = delivery.StatusFailed
		d.m.Deliveries.WithLabelValues("failed").Inc()
		return out, true
	}
	next := end.Add(wait)
	out.Status, out.NextAttemptAt = delivery.StatusRetrying, &next
	d.m.Deliveries.WithLabelValues("retried").Inc()
	d.m.RetriesScheduled.Inc()
	d.log.WarnContext(ctx, "attempt failed", "delivery_id", id, "webhook_id", msg.WebhookID,
		"attempt", msg.Attempt, "status", res.StatusCode, "err", out.Error, "retry_in", wait.String())
	return out, true
}

// excerpt keeps the response body as valid UTF-8 text without NUL for the attempt row.
func excerpt(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return store.CleanText(string(b))
}

// errorText is a failed attempt's error as its webhook's owner sees it: the class of the
// failure, without the addresses a host name resolved to (egress.Describe).
func errorText(err error) string {
	return store.CleanText(egress.Describe(err))
}
