package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/hookline/hookline/pkg/delivery"
)

// Outcome is what became of one delivery message in the dispatcher, to be recorded.
type Outcome struct {
	DeliveryID uuid.UUID
	WebhookID  uuid.UUID
	EventID    string // for error_log; may be empty (looked up)
	Attempt    int    // the attempt this message was for, 1-based
	// Attempted is false when no request was made (the delivery was handed back because its
	// endpoint is saturated, or ended because the webhook is gone): no attempt row then.
	Attempted      bool
	StatusCode     int
	Error          string
	Latency        time.Duration
	Response       string
	At             time.Time // end of the attempt
	Status         delivery.Status
	NextAttemptAt  *time.Time // when Status is retrying
	DisableWebhook string     // non-empty: disable the webhook with this reason (410 Gone)
}

// expected is the attempt_count the row must have for this outcome to apply.
func (o Outcome) expected() int { return o.Attempt - 1 }

// newCount is the attempt_count after this outcome.
func (o Outcome) newCount() int {
	if o.Attempted {
		return o.Attempt
	}
	return o.Attempt - 1
}

// RecordOutcomes writes a batch of outcomes in one transaction: attempt rows (one multi-row
// insert), the deliveries' new states (one UPDATE … FROM unnest, compare-and-set on
// attempt_count so a redelivered message changes nothing twice), error_log rows for deliveries
// that ended failed, and the endpoints' failure tracking. The caller acks the messages only
// after it returns nil. It returns the ids of webhooks it disabled (with the reason).
func RecordOutcomes(ctx context.Context, db *DB, outs []Outcome, disableAfter time.Duration) (map[uuid.UUID]string, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	disabled := map[uuid.UUID]string{}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		if err := insertAttempts(ctx, tx, outs); err != nil {
			return err
		}
		applied, err := updateDeliveries(ctx, tx, outs)
		if err != nil {
			return err
		}
		if err := insertErrorLog(ctx, tx, outs, applied); err != nil {
			return err
		}
		return trackEndpoints(ctx, tx, outs, applied, disableAfter, disabled)
	})
	return disabled, err
}

func insertAttempts(ctx context.Context, tx Querier, outs []Outcome) error {
	var (
		ids, errs, excerpts []string
		attempts, codes     []int64
		latencies           []float64
		ats                 []time.Time
	)
	for _, o := range outs {
		if !o.Attempted {
			continue
		}
		ids, errs, excerpts = append(ids, o.DeliveryID.String()), append(errs, o.Error), append(excerpts, o.Response)
		attempts, codes = append(attempts, int64(o.Attempt)), append(codes, int64(o.StatusCode))
		latencies, ats = append(latencies, float64(o.Latency.Microseconds())/1000), append(ats, o.At)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO delivery_attempts (delivery_id, attempt, status_code, error, latency_ms, response_excerpt, created_at)
		SELECT d, a, NULLIF(c, 0), NULLIF(e, ''), l, r, t
		FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::float8[], $6::text[], $7::timestamptz[]) AS x(d, a, c, e, l, r, t)
		ON CONFLICT DO NOTHING`,
		ids, attempts, codes, errs, latencies, excerpts, ats)
	if err != nil {
		return fmt.Errorf("insert delivery attempts: %w", err)
	}
	return nil
}

// updateDeliveries applies each outcome whose row still has the expected attempt_count and is
// not terminal; it returns the ids it changed.
func updateDeliveries(ctx context.Context, tx Querier, outs []Outcome) (map[uuid.UUID]bool, error) {
	var (
		ids, statuses          []string
		expected, counts, code []int64
		next                   []*time.Time
	)
	for _, o := range outs {
		ids, statuses = append(ids, o.DeliveryID.String()), append(statuses, string(o.Status))
		expected, counts = append(expected, int64(o.expected())), append(counts, int64(o.newCount()))
		code, next = append(code, int64(o.StatusCode)), append(next, o.NextAttemptAt)
	}
	rows, err := tx.QueryContext(ctx, `
		UPDATE deliveries d SET status = u.status, attempt_count = u.count, next_attempt_at = u.next,
		       last_status_code = COALESCE(NULLIF(u.code, 0), d.last_status_code), updated_at = now()
		FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::int[], $6::timestamptz[])
		     AS u(id, status, expected, count, code, next)
		WHERE d.id = u.id AND d.attempt_count = u.expected AND d.status IN ('pending', 'retrying')
		RETURNING d.id`,
		ids, statuses, expected, counts, code, next)
	if err != nil {
		return nil, fmt.Errorf("update deliveries: %w", err)
	}
	defer rows.Close()
	applied := map[uuid.UUID]bool{}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		applied[id] = true
	}
	return applied, rows.Err()
}

func insertErrorLog(ctx context.Context, tx Querier, outs []Outcome, applied map[uuid.UUID]bool) error {
	var (
		ids, errs []string
		attempts  []int64
	)
	for _, o := range outs {
		if o.Status != delivery.StatusFailed || !applied[o.DeliveryID] {
			continue
		}
		ids, errs, attempts = append(ids, o.DeliveryID.String()), append(errs, failureText(o)), append(attempts, int64(o.newCount()))
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO error_log (delivery_id, webhook_id, event_id, attempt, error)
		SELECT d.id, d.webhook_id, d.event_id, x.a, x.e
		FROM unnest($1::uuid[], $2::int[], $3::text[]) AS x(id, a, e) JOIN deliveries d ON d.id = x.id
		ON CONFLICT DO NOTHING`,
		ids, attempts, errs)
	if err != nil {
		return fmt.Errorf("insert error log: %w", err)
	}
	return nil
}

func failureText(o Outcome) string {
	switch {
	case o.Error != "" && o.StatusCode != 0:
		return fmt.Sprintf("HTTP %d: %s", o.StatusCode, o.Error)
	case o.Error != "":
		return o.Error
	case o.StatusCode != 0:
		return fmt.Sprintf("HTTP %d after %d attempts", o.StatusCode, o.newCount())
	default:
		return "failed"
	}
}

// trackEndpoints keeps failing_since per webhook: cleared by a 2xx, set by the first failure;
// a webhook whose failures have lasted disableAfter, or that answered 410, is disabled.
func trackEndpoints(ctx context.Context, tx Querier, outs []Outcome, applied map[uuid.UUID]bool,
	disableAfter time.Duration, disabled map[uuid.UUID]string) error {
	var ok, failing, goneIDs, goneReasons []string
	for _, o := range outs {
		if !o.Attempted || !applied[o.DeliveryID] {
			continue
		}
		switch {
		case o.DisableWebhook != "":
			goneIDs, goneReasons = append(goneIDs, o.WebhookID.String()), append(goneReasons, o.DisableWebhook)
		case o.Status == delivery.StatusSucceeded:
			ok = append(ok, o.WebhookID.String())
		default:
			failing = append(failing, o.WebhookID.String())
		}
	}
	if len(ok) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET failing_since = NULL
			WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL`, ok); err != nil {
			return fmt.Errorf("clear failing endpoints: %w", err)
		}
	}
	if len(failing) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_registrations SET failing_since = now()
			WHERE id = ANY($1::uuid[]) AND failing_since IS NULL`, failing); err != nil {
			return fmt.Errorf("track failing endpoints: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `
			UPDATE webhook_registrations SET enabled = false, disabled_at = now(), updated_at = now(),
			       disabled_reason = 'every attempt failed since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
			WHERE id = ANY($1::uuid[]) AND enabled AND failing_since < now() - $2::interval
			RETURNING id`,
			failing, fmt.Sprintf("%d microseconds", disableAfter.Microseconds()))
		if err != nil {
			return fmt.Errorf("disable failing endpoints: %w", err)
		}
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			disabled[id] = "failing"
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if len(goneIDs) > 0 {
		rows, err := tx.QueryContext(ctx, `
			UPDATE webhook_registrations w SET enabled = false, disabled_reason = x.r, disabled_at = now(), updated_at = now()
			FROM unnest($1::uuid[], $2::text[]) AS x(id, r) WHERE w.id = x.id AND w.enabled RETURNING w.id`,
			goneIDs, goneReasons)
		if err != nil {
			return fmt.Errorf("disable gone endpoints: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			disabled[id] = "gone"
		}
		return rows.Err()
	}
	return nil
}

// ClaimDue takes up to limit deliveries whose retry is due, in a transaction that stays open
// while publish sends them: rows are locked (SKIP LOCKED, so schedulers on several replicas
// share the work) and marked pending only when publish returned nil. A crash between publish
// and commit republishes the same attempt with the same Nats-Msg-Id, which the stream drops.
func ClaimDue(ctx context.Context, db *DB, limit int, publish func([]delivery.Due) error) (int, error) {
	var n int
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		rows, err := tx.QueryContext(ctx, `
			SELECT id, webhook_id, event_type, attempt_count + 1, payload, occurred_at,
			       (extract(epoch FROM next_attempt_at) * 1000000)::bigint::text
			FROM deliveries WHERE status = 'retrying' AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("select due deliveries: %w", err)
		}
		qs, err := scanQueued(rows)
		if err != nil || len(qs) == 0 {
			return err
		}
		if err := publish(qs); err != nil {
			return err
		}
		if err := markPending(ctx, tx, qs); err != nil {
			return err
		}
		n = len(qs)
		return nil
	})
	return n, err
}

// ClaimStale takes deliveries that are pending (published) but have not moved for olderThan:
// their message was lost (a crash between commit and publish, a purged stream). publish sends
// them again; updated_at moves so each is resent at most once per olderThan.
func ClaimStale(ctx context.Context, db *DB, olderThan time.Duration, limit int, publish func([]delivery.Due) error) (int, error) {
	var n int
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		rows, err := tx.QueryContext(ctx, `
			SELECT id, webhook_id, event_type, attempt_count + 1, payload, occurred_at,
			       'r' || (extract(epoch FROM now()) * 1000000)::bigint::text
			FROM deliveries WHERE status = 'pending' AND updated_at < now() - $1::interval
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			fmt.Sprintf("%d microseconds", olderThan.Microseconds()), limit)
		if err != nil {
			return fmt.Errorf("select stale deliveries: %w", err)
		}
		qs, err := scanQueued(rows)
		if err != nil || len(qs) == 0 {
			return err
		}
		if err := publish(qs); err != nil {
			return err
		}
		if err := markPending(ctx, tx, qs); err != nil {
			return err
		}
		n = len(qs)
		return nil
	})
	return n, err
}

func markPending(ctx context.Context, tx Querier, qs []delivery.Due) error {
	ids := make([]string, len(qs))
	for i, q := range qs {
		ids[i] = q.ID.String()
	}
	_, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', next_attempt_at = NULL, updated_at = now()
		WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return fmt.Errorf("mark deliveries pending: %w", err)
	}
	return nil
}

type rowScanner interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}

func scanQueued(rows rowScanner) ([]delivery.Due, error) {
	defer rows.Close()
	var out []delivery.Due
	for rows.Next() {
		var q delivery.Due
		if err := rows.Scan(&q.ID, &q.WebhookID, &q.EventType, &q.Attempt, &q.Payload, &q.OccurredAt, &q.Key); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// AttemptDue reports whether attempt n of a delivery is still the next one to make: the row is
// not terminal and has recorded n-1 attempts.
func AttemptDue(ctx context.Context, db Querier, id uuid.UUID, n int) (bool, error) {
	var due bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1
		AND attempt_count = $2 AND status IN ('pending', 'retrying'))`, id, n-1).Scan(&due)
	if err != nil {
		return false, fmt.Errorf("check delivery %s: %w", id, err)
	}
	return due, nil
}
