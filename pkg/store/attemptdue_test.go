package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// AttemptDue tells a copy of a superseded scheduling from the current one: after a hand-back
// (next_attempt_at set) the first publish's copy (key "") is no longer due, the scheduler's
// copy (key = next_attempt_at in microseconds) is, and a reconciled copy ("r…") always is
// while the attempt is not made. A cut-off dispatcher's handed-back message redelivered
// after AckWait must not be sent beside the scheduler's new copy.
func TestAttemptDueSchedulingKey(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	hook := testWebhook(t, db)
	id := uuid.New()
	if _, err := db.ExecContext(ctx, `INSERT INTO deliveries (id, event_id, webhook_id, user_id, event_type, payload, occurred_at)
		VALUES ($1, 'due-1', $2, 1, 'upload.completed', '\x7b7d', now())`, id, hook); err != nil {
		t.Fatal(err)
	}
	check := func(when, key string, want bool) {
		t.Helper()
		got, err := store.AttemptDue(ctx, db, id, 1, key)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: AttemptDue(1, %q) = %v, want %v", when, key, got, want)
		}
	}
	check("first publish", "", true)
	check("first publish", "r123", true)

	next := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)
	key := strconv.FormatInt(next.UnixMicro(), 10)
	if _, err := db.ExecContext(ctx, `UPDATE deliveries SET status = 'retrying', next_attempt_at = $2 WHERE id = $1`, id, next); err != nil {
		t.Fatal(err)
	}
	check("handed back", "", false)
	check("handed back", key, true)
	if _, err := db.ExecContext(ctx, `UPDATE deliveries SET status = 'pending' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	check("republished by the scheduler", "", false)
	check("republished by the scheduler", key, true)
	check("republished by the scheduler", strconv.FormatInt(next.Add(-time.Second).UnixMicro(), 10), false)
	check("republished by the scheduler", "r456", true)

	if _, err := db.ExecContext(ctx, `UPDATE deliveries SET status = 'succeeded', attempt_count = 1 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	check("made", key, false)
	check("made", "r456", false)
}
