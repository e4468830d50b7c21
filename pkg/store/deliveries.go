package store

import (
	"context"
	"database/sql"
	"errors"
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
	// Fresh says the message was the processor's first publish of attempt 1 (not a retry, a
	// hand-back's return or a reconciled copy), and WebhookFailing that the webhook was
	// marked failing when last loaded. A fresh success on a webhook that is not failing is
	// recorded by appending its attempt row alone (see Appendable).
	Fresh, WebhookFailing bool
}

// Appendable reports an outcome that RecordOutcomes records by appending its attempt row
// alone, with no UPDATE: a first attempt that succeeded, of a webhook not marked failing.
// The view delivery_states shows such a delivery as succeeded.
func (o Outcome) Appendable() bool {
	return o.Attempted && o.Status == delivery.StatusSucceeded && o.Fresh && o.Attempt == 1 && !o.WebhookFailing
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

// RecordOutcomes records a batch of outcomes; the caller acks the messages only after it
// returns nil. Appendable outcomes (the common case: a first attempt that succeeded) cost one
// multi-row INSERT of attempt rows and nothing else. The others go through one statement, so
// one round trip and one commit: attempt rows, the deliveries' new states (compare-and-set on
// attempt_count, and never over a success already recorded, so a redelivered message changes
// nothing twice), error_log rows for deliveries that ended failed, and the endpoints' failure
// tracking (a 2xx clears it, the first failure starts it, failing for disableAfter or a 410
// disables the webhook). It returns the webhooks it disabled, with the reason: "gone" or
// "failing". Texts are cleaned (CleanText) before they are written.
func RecordOutcomes(ctx context.Context, db Querier, outs []Outcome, disableAfter time.Duration) (map[uuid.UUID]string, error) {
	var appended, updated []Outcome
	for _, o := range outs {
		o.Error, o.Response = CleanText(o.Error), CleanText(o.Response)
		if o.Appendable() {
			appended = append(appended, o)
		} else {
			updated = append(updated, o)
		}
	}
	if err := appendAttempts(ctx, db, appended); err != nil {
		return nil, err
	}
	return updateOutcomes(ctx, db, updated, disableAfter)
}

// appendAttempts inserts the attempt rows of appendable outcomes in one statement. A row that
// exists (a redelivered message) is left as it is.
func appendAttempts(ctx context.Context, db Querier, outs []Outcome) error {
	if len(outs) == 0 {
		return nil
	}
	n := len(outs)
	var (
		ids       = make([]string, n)
		attempts  = make([]int32, n)
		codes     = make([]int32, n)
		latencies = make([]float64, n)
		excerpts  = make([]string, n)
		ats       = make([]time.Time, n)
	)
	for i, o := range outs {
		ids[i], attempts[i], codes[i] = o.DeliveryID.String(), int32(o.Attempt), int32(o.StatusCode)
		latencies[i], excerpts[i], ats[i] = float64(o.Latency.Microseconds())/1000, o.Response, o.At
	}
	_, err := db.ExecContext(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, status_code, latency_ms, response_excerpt, created_at)
		SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::float8[], $5::text[], $6::timestamptz[])
		ON CONFLICT DO NOTHING`, ids, attempts, codes, latencies, excerpts, ats)
	if err != nil {
		return fmt.Errorf("append attempts: %w", err)
	}
	return nil
}

func updateOutcomes(ctx context.Context, db Querier, outs []Outcome, disableAfter time.Duration) (map[uuid.UUID]string, error) {
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
		gone[i], next[i], ats[i] = CleanText(o.DisableWebhook), o.NextAttemptAt, o.At
		latencies[i] = float64(o.Latency.Microseconds()) / 1000
		if o.Status == delivery.StatusFailed {
			failures[i] = CleanText(failureText(o))
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	return disabled, nil
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
	  AND NOT EXISTS (SELECT 1 FROM delivery_attempts s WHERE s.delivery_id = d.id AND s.attempt = d.attempt_count + 1
	                  AND s.status_code BETWEEN 200 AND 299 AND s.error IS NULL) -- a success appended already
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
// A due row whose attempt already succeeded (a copy of a handed-back message went through) is
// settled to succeeded instead of being sent again.
func ClaimDue(ctx context.Context, db *DB, limit int, publish func([]delivery.Due) error) (int, error) {
	return claim(ctx, db, "due", publish, `
		WITH due AS (
			SELECT d.id, (SELECT s.status_code FROM delivery_attempts s WHERE s.delivery_id = d.id AND s.attempt = d.attempt_count + 1
			              AND s.status_code BETWEEN 200 AND 299 AND s.error IS NULL) AS done_code
			FROM deliveries d WHERE d.status = 'retrying' AND d.next_attempt_at <= now()
			ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
		), settled AS (
			UPDATE deliveries d SET status = 'succeeded', attempt_count = d.attempt_count + 1, last_status_code = due.done_code,
			       next_attempt_at = NULL, updated_at = now()
			FROM due WHERE d.id = due.id AND due.done_code IS NOT NULL
		)
		SELECT d.id, d.webhook_id, d.event_type, d.attempt_count + 1, d.payload, d.occurred_at,
		       (extract(epoch FROM d.next_attempt_at) * 1000000)::bigint::text, COALESCE(d.seq, 0), d.event_id, d.user_id
		FROM deliveries d JOIN due ON due.id = d.id AND due.done_code IS NULL`, limit)
}

// ClaimStale takes deliveries that the scheduler or the reconciler published (pending, with
// next_attempt_at kept) but that have not moved for olderThan: their message was lost (a
// purged stream, a lost disk). publish sends them again; updated_at moves so each is resent at
// most once per olderThan.
func ClaimStale(ctx context.Context, db *DB, olderThan time.Duration, limit int, publish func([]delivery.Due) error) (int, error) {
	return claim(ctx, db, "stale", publish, `
		SELECT id, webhook_id, event_type, attempt_count + 1, payload, occurred_at,
		       'r' || (extract(epoch FROM now()) * 1000000)::bigint::text, COALESCE(seq, 0), event_id, user_id
		FROM deliveries WHERE status = 'pending' AND next_attempt_at IS NOT NULL AND updated_at < now() - $2::interval
		ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
		limit, fmt.Sprintf("%d microseconds", olderThan.Microseconds()))
}

// ClaimFirstAttempts walks deliveries created more than olderThan ago, past the durable mark
// "first_attempts", at most step of created_at per call, and publishes those still owed their
// first attempt with no attempt recorded: their message was lost. It marks them claimed
// (next_attempt_at set, so ClaimStale owns them from then on) and moves the mark, in one
// transaction (the mark row's lock makes replicas take turns). It returns how many it
// published and whether the mark has caught up with now - olderThan.
func ClaimFirstAttempts(ctx context.Context, db *DB, olderThan, step time.Duration, limit int, publish func([]delivery.Due) error) (int, bool, error) {
	var (
		n      int
		caught bool
	)
	err := db.RunInTx(ctx, nil, func(ctx context.Context, btx bun.Tx) error {
		tx := btx.Tx
		var mark, upto time.Time
		err := tx.QueryRowContext(ctx, `SELECT mark, least(mark + $1::interval, now() - $2::interval), mark + $1::interval >= now() - $2::interval
			FROM reconciler_marks WHERE name = 'first_attempts' FOR UPDATE`,
			fmt.Sprintf("%d microseconds", step.Microseconds()), fmt.Sprintf("%d microseconds", olderThan.Microseconds())).Scan(&mark, &upto, &caught)
		if err != nil {
			return fmt.Errorf("read reconciler mark: %w", err)
		}
		if !upto.After(mark) {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `
			SELECT id, webhook_id, event_type, 1, payload, occurred_at, 'r' || (extract(epoch FROM now()) * 1000000)::bigint::text,
			       COALESCE(seq, 0), event_id, user_id
			FROM deliveries d
			WHERE created_at > $1 AND created_at <= $2 AND status = 'pending' AND attempt_count = 0 AND next_attempt_at IS NULL
			  AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id)
			ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED`, mark, upto, limit)
		if err != nil {
			return fmt.Errorf("select owed first attempts: %w", err)
		}
		qs, err := scanQueued(rows)
		if err != nil {
			return err
		}
		if len(qs) == limit {
			// More may share the last created_at (a batch commits with one timestamp): stay
			// just before it; those sent now no longer match (next_attempt_at is set).
			caught = false
			if err := tx.QueryRowContext(ctx, `SELECT created_at - interval '1 microsecond' FROM deliveries WHERE id = $1`,
				qs[len(qs)-1].ID).Scan(&upto); err != nil {
				return fmt.Errorf("read reconciler position: %w", err)
			}
		}
		if len(qs) > 0 {
			if err := publish(qs); err != nil {
				return err
			}
			if err := markPending(ctx, tx, qs); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE reconciler_marks SET mark = greatest(mark, $1) WHERE name = 'first_attempts'`, upto); err != nil {
			return fmt.Errorf("move reconciler mark: %w", err)
		}
		n = len(qs)
		return nil
	})
	return n, caught, err
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

// markPending records that qs were published: pending, with next_attempt_at kept (set to now
// for a first attempt) so the row stays in deliveries_claimed_idx until its outcome.
func markPending(ctx context.Context, tx Querier, qs []delivery.Due) error {
	ids := make([]string, len(qs))
	for i, q := range qs {
		ids[i] = q.ID.String()
	}
	_, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', next_attempt_at = COALESCE(next_attempt_at, now()),
		updated_at = now() WHERE id = ANY($1::uuid[])`, ids)
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
		if err := rows.Scan(&q.ID, &q.WebhookID, &q.EventType, &q.Attempt, &q.Payload, &q.OccurredAt, &q.Key, &q.Seq, &q.EventID, &q.UserID); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// AttemptDue reports whether attempt n of a delivery, in the scheduling key (delivery.Due.Key),
// is still the next one to make: the row is not terminal, has recorded n-1 attempts, no attempt
// n or later was appended, and the scheduling was not superseded. A copy of the first
// scheduling (key "") is superseded once the row has a next_attempt_at (handed back, or
// republished by the scheduler or the reconciler); a scheduler's copy (its key is the
// next_attempt_at it was published for) once next_attempt_at moved on. A reconciled copy
// ("r…") is never superseded here.
func AttemptDue(ctx context.Context, db Querier, id uuid.UUID, n int, key string) (bool, error) {
	var due bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries d WHERE id = $1
		AND attempt_count = $2 AND status IN ('pending', 'retrying')
		AND CASE WHEN $4 = '' THEN d.next_attempt_at IS NULL
		         WHEN left($4, 1) = 'r' THEN true
		         ELSE (extract(epoch FROM d.next_attempt_at) * 1000000)::bigint::text IS NOT DISTINCT FROM $4 END
		AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id AND a.attempt >= $3))`, id, n-1, n, key).Scan(&due)
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

// EarlierOutstanding reports, for a delivery of a FIFO webhook, whether an earlier delivery of
// the same webhook (by seq, the event's stream sequence) is still pending or retrying, and, when
// the first such one waits for a retry, when that is due (nil otherwise). A delivery without seq
// is never blocked.
func EarlierOutstanding(ctx context.Context, db Querier, id uuid.UUID) (bool, *time.Time, error) {
	var (
		status string
		next   *time.Time
	)
	err := db.QueryRowContext(ctx, `
		SELECT e.status, e.next_attempt_at FROM deliveries d
		JOIN deliveries e ON e.webhook_id = d.webhook_id AND e.seq < d.seq
		WHERE d.id = $1 AND e.seq IS NOT NULL AND e.status IN ('pending', 'retrying')
		ORDER BY e.seq LIMIT 1`, id).Scan(&status, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("check order of delivery %s: %w", id, err)
	}
	if status != "retrying" {
		next = nil
	}
	return true, next, nil
}
