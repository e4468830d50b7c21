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
	Attempt    int // the attempt this message was for, 1-based
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

// RecordOutcomes writes a batch of outcomes in one statement, so in one round trip and one
// commit: attempt rows, the deliveries' new states (compare-and-set on attempt_count, so a
// redelivered message changes nothing twice), error_log rows for deliveries that ended failed,
// and the endpoints' failure tracking (a 2xx clears it, the first failure starts it, failing
// for disableAfter or a 410 disables the webhook). The caller acks the messages only after it
// returns nil. It returns the webhooks it disabled, with the reason: "gone" or "failing".
func RecordOutcomes(ctx context.Context, db Querier, outs []Outcome, disableAfter time.Duration) (map[uuid.UUID]string, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	n := len(outs)
	var (
		ids, hooks                 = make([]string, n), make([]string, n)
		attempts, expected, counts = make([]int32, n), make([]int32, n), make([]int32, n)
		codes                      = make([]int32, n)
		attempted                  = make([]bool, n)
		statuses, errs, excerpts   = make([]string, n), make([]string, n), make([]string, n)
		gone, failures             = make([]string, n), make([]string, n)
		next                       = make([]*time.Time, n)
		ats                        = make([]time.Time, n)
		latencies                  = make([]float64, n)
	)
	for i, o := range outs {
		ids[i], hooks[i] = o.DeliveryID.String(), o.WebhookID.String()
		attempts[i], expected[i], counts[i] = int32(o.Attempt), int32(o.expected()), int32(o.newCount())
		codes[i], attempted[i] = int32(o.StatusCode), o.Attempted
		statuses[i], errs[i], excerpts[i] = string(o.Status), o.Error, o.Response
		gone[i], next[i], ats[i] = o.DisableWebhook, o.NextAttemptAt, o.At
		latencies[i] = float64(o.Latency.Microseconds()) / 1000
		if o.Status == delivery.StatusFailed {
			failures[i] = failureText(o)
		}
	}
	rows, err := db.QueryContext(ctx, recordOutcomesSQL, ids, hooks, attempts, attempted, statuses, expected, counts,
		codes, next, errs, latencies, excerpts, ats, gone, failures, fmt.Sprintf("%d microseconds", disableAfter.Microseconds()))
	if err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	defer rows.Close()
	disabled := map[uuid.UUID]string{}
	for rows.Next() {
		var (
			id           uuid.UUID
			wasGone, now bool
		)
		if err := rows.Scan(&id, &wasGone, &now); err != nil {
			return nil, err
		}
		switch {
		case now && wasGone:
			disabled[id] = "gone"
		case now:
			disabled[id] = "failing"
		}
	}
	return disabled, rows.Err()
}

// recordOutcomesSQL is RecordOutcomes' statement. Data-modifying CTEs all run, against one
// snapshot, and commit together.
const recordOutcomesSQL = `
WITH x AS (
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::bool[], $5::text[], $6::int[], $7::int[], $8::int[],
	                     $9::timestamptz[], $10::text[], $11::float8[], $12::text[], $13::timestamptz[], $14::text[], $15::text[])
	  AS x(id, webhook_id, attempt, attempted, status, expected, count, code, next, err, latency, excerpt, at, gone, failure)
), att AS (
	INSERT INTO delivery_attempts (delivery_id, attempt, status_code, error, latency_ms, response_excerpt, created_at)
	SELECT id, attempt, NULLIF(code, 0), NULLIF(err, ''), latency, excerpt, at FROM x WHERE attempted
	ON CONFLICT DO NOTHING
), upd AS (
	UPDATE deliveries d SET status = x.status, attempt_count = x.count, next_attempt_at = x.next,
	       last_status_code = COALESCE(NULLIF(x.code, 0), d.last_status_code), updated_at = now()
	FROM x WHERE d.id = ANY($1::uuid[]) -- an index condition, so a stale estimate never seq-scans deliveries
	  AND d.id = x.id AND d.attempt_count = x.expected AND d.status IN ('pending', 'retrying')
	RETURNING d.id, d.webhook_id, d.event_id
), el AS (
	INSERT INTO error_log (delivery_id, webhook_id, event_id, attempt, error)
	SELECT upd.id, upd.webhook_id, upd.event_id, x.count, x.failure FROM upd JOIN x ON x.id = upd.id
	WHERE x.status = 'failed'
	ON CONFLICT DO NOTHING
), h AS (
	SELECT x.webhook_id AS id, max(NULLIF(x.gone, '')) AS gone, bool_or(x.status = 'succeeded') AS ok
	FROM x JOIN upd ON upd.id = x.id WHERE x.attempted GROUP BY x.webhook_id
), w AS (
	SELECT w.id, h.gone, h.ok, w.enabled,
	       COALESCE(w.enabled AND (h.gone IS NOT NULL OR (NOT h.ok AND w.failing_since < now() - $16::interval)), false) AS disable
	FROM webhook_registrations w JOIN h ON h.id = w.id
	WHERE (h.gone IS NOT NULL AND w.enabled)
	   OR (h.gone IS NULL AND h.ok AND w.failing_since IS NOT NULL)
	   OR (h.gone IS NULL AND NOT h.ok AND (w.failing_since IS NULL OR (w.enabled AND w.failing_since < now() - $16::interval)))
)
UPDATE webhook_registrations r SET
	failing_since = CASE WHEN w.gone IS NULL AND w.ok THEN NULL ELSE COALESCE(r.failing_since, now()) END,
	enabled = r.enabled AND NOT w.disable,
	disabled_reason = CASE WHEN NOT w.disable THEN r.disabled_reason WHEN w.gone IS NOT NULL THEN w.gone
	                  ELSE 'every attempt failed since ' || to_char(r.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') END,
	disabled_at = CASE WHEN w.disable THEN now() ELSE r.disabled_at END,
	updated_at = CASE WHEN w.disable THEN now() ELSE r.updated_at END
FROM w WHERE r.id = w.id
RETURNING r.id, w.gone IS NOT NULL, w.disable`

// ClaimDue takes up to limit deliveries whose retry is due, in a transaction that stays open
// while publish sends them: rows are locked (SKIP LOCKED, so schedulers on several replicas
// share the work) and marked pending only when publish returned nil. A crash between publish
// and commit republishes the same attempt with the same Nats-Msg-Id, which the stream drops.
func ClaimDue(ctx context.Context, db *DB, limit int, publish func([]delivery.Due) error) (int, error) {
	return claim(ctx, db, "due", publish, `
		SELECT id, webhook_id, event_type, attempt_count + 1, payload, occurred_at,
		       (extract(epoch FROM next_attempt_at) * 1000000)::bigint::text
		FROM deliveries WHERE status = 'retrying' AND next_attempt_at <= now()
		ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
}

// ClaimStale takes deliveries that are pending (published) but have not moved for olderThan:
// their message was lost (a crash between commit and publish, a purged stream). publish sends
// them again; updated_at moves so each is resent at most once per olderThan.
func ClaimStale(ctx context.Context, db *DB, olderThan time.Duration, limit int, publish func([]delivery.Due) error) (int, error) {
	return claim(ctx, db, "stale", publish, `
		SELECT id, webhook_id, event_type, attempt_count + 1, payload, occurred_at,
		       'r' || (extract(epoch FROM now()) * 1000000)::bigint::text
		FROM deliveries WHERE status = 'pending' AND updated_at < now() - $2::interval
		ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
		limit, fmt.Sprintf("%d microseconds", olderThan.Microseconds()))
}

// claim locks the rows query selects, publishes them, and marks them pending, in one
// transaction; it returns how many it published.
func claim(ctx context.Context, db *DB, what string, publish func([]delivery.Due) error, query string, args ...any) (int, error) {
	var n int
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx // raw SQL with bound parameters
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("select %s deliveries: %w", what, err)
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
