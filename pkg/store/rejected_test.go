package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// PruneRejected deletes rejected events past their retention and, per user, all but the
// newest perUser; SaveEvents records each rejection's user.
func TestPruneRejected(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	// Through SaveEvents, oldest first: user 1 five, user 2 two, user 0 (did not decode) three.
	var rej []store.Rejection
	for i, user := range []int64{1, 1, 1, 1, 1, 2, 2, 0, 0, 0} {
		rej = append(rej, store.Rejection{EventID: fmt.Sprintf("r-%d", i), Subject: "events.x", Reason: "unknown_type",
			Payload: []byte("{}"), StreamSeq: uint64(i + 1), UserID: user})
	}
	for _, r := range rej { // one batch each, so ids follow the order above
		if _, err := store.SaveEvents(ctx, db, nil, []store.Rejection{r}, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Two of user 2 received long ago.
	if _, err := db.ExecContext(ctx, `INSERT INTO rejected_events (event_id, subject, reason, payload, user_id, received_at)
		VALUES ('old-1', 'events.x', 'unknown_type', '\x7b7d', 2, now() - interval '10 days'),
		       ('old-2', 'events.x', 'unknown_type', '\x7b7d', 2, now() - interval '8 days')`); err != nil {
		t.Fatal(err)
	}
	users := func() map[string]int64 {
		rows, err := db.QueryContext(ctx, `SELECT event_id, user_id FROM rejected_events`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int64{}
		for rows.Next() {
			var (
				id   string
				user int64
			)
			if err := rows.Scan(&id, &user); err != nil {
				t.Fatal(err)
			}
			out[id] = user
		}
		return out
	}
	before := users()
	for i, r := range rej {
		if got := before[fmt.Sprintf("r-%d", i)]; got != r.UserID {
			t.Errorf("rejection r-%d stored with user_id %d, want %d", i, got, r.UserID)
		}
	}

	n, err := store.PruneRejected(ctx, db, time.Now().Add(-7*24*time.Hour), 3, 5000)
	if err != nil {
		t.Fatal(err)
	}
	after := users()
	var kept []string
	for id := range after {
		kept = append(kept, id)
	}
	slices.Sort(kept)
	// user 1 keeps its newest three (r-2..r-4), user 2 its two recent ones, user 0 its three.
	want := []string{"r-2", "r-3", "r-4", "r-5", "r-6", "r-7", "r-8", "r-9"}
	if !slices.Equal(kept, want) || n != 4 {
		t.Fatalf("PruneRejected removed %d rows and kept %v, want 4 removed and %v kept", n, kept, want)
	}

	// No retention (zero time) and no cap: nothing goes.
	if n, err := store.PruneRejected(ctx, db, time.Time{}, 0, 5000); err != nil || n != 0 {
		t.Fatalf("PruneRejected without retention or cap = %d, %v; want 0", n, err)
	}
}
