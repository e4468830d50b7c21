package store_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
	"github.com/hookline/hookline/pkg/webhook"
)

// userWebhook registers one webhook of user subscribed to upload.completed.
func userWebhook(t *testing.T, db *store.DB, user int64) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	typeID, err := store.EventTypeIDByName(ctx, db, "upload.completed")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.CreateWebhook(ctx, db, store.NewWebhook{UserID: user, URL: "http://127.0.0.1:9/hook",
		EventTypeIDs: []uuid.UUID{typeID}, Secret: string(sec)})
	if err != nil {
		t.Fatal(err)
	}
	return w.ID
}

// sharedIDEvents makes one event with id for each (user, webhook), each announcing a file and
// with one delivery.
func sharedIDEvents(id string, users []int64, hooks []uuid.UUID) []store.AcceptedEvent {
	now := time.Now().UTC()
	evs := make([]store.AcceptedEvent, len(users))
	for i, u := range users {
		evs[i] = store.AcceptedEvent{ID: id, Type: "upload.completed", UserID: u, OccurredAt: now, Data: []byte(`{"n":1}`),
			File:       &store.File{ID: uuid.New(), WebhookID: hooks[i], UserID: u, FileName: "f", ObjectName: "o", UploadedAt: now},
			Deliveries: []store.NewDelivery{{ID: uuid.NewSHA1(uuid.Nil, []byte(id+hooks[i].String())), WebhookID: hooks[i], Payload: []byte(`{}`)}}}
	}
	return evs
}

// Event ids are per user: two users' events with one id are two events, each with its file and
// deliveries; saving them again creates nothing; a lookup by id names the user; retention
// prunes one user's event without the other's.
func TestEventIDsPerUser(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	h1, h2 := userWebhook(t, db, 1), userWebhook(t, db, 2)
	evs := sharedIDEvents("shared-1", []int64{1, 2}, []uuid.UUID{h1, h2})
	created, err := store.SaveEvents(ctx, db, evs, nil, 0, 0)
	if err != nil || len(created) != 2 {
		t.Fatalf("SaveEvents = %d deliveries, %v; want 2", len(created), err)
	}
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM events WHERE id = 'shared-1'`); n != 2 {
		t.Fatalf("events with id shared-1 = %d, want 2 (one per user)", n)
	}
	if n := count(`SELECT count(*) FROM files WHERE event_id = 'shared-1'`); n != 2 {
		t.Fatalf("files of shared-1 = %d, want 2", n)
	}
	// The same user's event again (a redelivery): nothing new.
	if created, err := store.SaveEvents(ctx, db, evs, nil, 0, 0); err != nil || len(created) != 0 {
		t.Fatalf("SaveEvents again = %d deliveries, %v; want 0", len(created), err)
	}
	if n := count(`SELECT count(*) FROM events`) + count(`SELECT count(*) FROM deliveries`); n != 4 {
		t.Fatalf("events + deliveries after a repeat = %d, want 4", n)
	}

	e, err := store.GetEvent(ctx, db, 2, "shared-1")
	if err != nil || e.UserID != 2 || len(e.Deliveries) != 1 || e.Deliveries[0].WebhookID != h2 {
		t.Fatalf("GetEvent(user 2) = %+v, %v; want user 2's event with its one delivery", e, err)
	}
	if _, err := store.GetEvent(ctx, db, 0, "shared-1"); !errors.Is(err, store.ErrEventAmbiguous) {
		t.Fatalf("GetEvent(any user) = %v, want ErrEventAmbiguous", err)
	}
	if _, err := store.GetEvent(ctx, db, 3, "shared-1"); !errors.Is(err, store.ErrNoEvent) {
		t.Fatalf("GetEvent(user 3) = %v, want ErrNoEvent", err)
	}

	// User 1's event is old, user 2's is not: retention removes user 1's only.
	if _, err := db.ExecContext(ctx, `UPDATE events SET received_at = now() - interval '2 days' WHERE user_id = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Prune(ctx, db, time.Now().Add(-time.Hour), time.Time{}, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetEvent(ctx, db, 2, "shared-1"); err != nil {
		t.Fatalf("user 2's recent event after pruning user 1's old one: %v", err)
	}
	if _, err := store.GetEvent(ctx, db, 1, "shared-1"); !errors.Is(err, store.ErrNoEvent) {
		t.Fatalf("user 1's old event after pruning: %v, want ErrNoEvent", err)
	}
}

// The per-user ids migration goes down with ids that several users sent (the smallest user
// keeps the id, the others' rows become "<user>:<id>" everywhere) and up again.
func TestPerUserEventIDsMigrationDown(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	h1, h2 := userWebhook(t, db, 1), userWebhook(t, db, 2)
	if _, err := store.SaveEvents(ctx, db, sharedIDEvents("shared-2", []int64{1, 2}, []uuid.UUID{h1, h2}), nil, 0, 0); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile("../../migrations/20261204000000_per_user_event_ids.tx." + name + ".sql")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tx, err := db.DB.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, read("down")); err != nil {
		t.Fatalf("down: %v", err)
	}
	var got []string
	rows, err := tx.QueryContext(ctx, `SELECT e.id || '|' || d.event_id || '|' || f.event_id FROM events e
		JOIN deliveries d ON d.user_id = e.user_id JOIN files f ON f.user_id = e.user_id ORDER BY e.user_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	rows.Close()
	if len(got) != 2 || got[0] != "shared-2|shared-2|shared-2" || got[1] != "2:shared-2|2:shared-2|2:shared-2" {
		t.Fatalf("after down: %q; want user 1 keeps shared-2, user 2's rows become 2:shared-2", got)
	}
	if _, err := tx.ExecContext(ctx, read("up")); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (id, type, user_id, occurred_at, data)
		VALUES ('shared-2', 't', 2, now(), '{}')`); err != nil {
		t.Fatalf("user 2 sends shared-2 again after up: %v", err)
	}
}

// Events of one batch share received_at, and two users may share an id: paging one event at a
// time through the cursor (encoded and parsed, as clients send it) still lists each once.
func TestListEventsPagesThroughSharedIDs(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	users := []int64{1, 2, 3}
	hooks := []uuid.UUID{userWebhook(t, db, 1), userWebhook(t, db, 2), userWebhook(t, db, 3)}
	if _, err := store.SaveEvents(ctx, db, sharedIDEvents("shared-3", users, hooks), nil, 0, 0); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	var after store.Cursor
	for range 10 {
		page, err := store.ListEvents(ctx, db, store.EventFilter{}, 1, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			seen[e.UserID]++
		}
		if page.Next == nil {
			break
		}
		if after, err = store.ParseCursor(page.Next.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 || seen[1] != 1 || seen[2] != 1 || seen[3] != 1 {
		t.Fatalf("pages listed users %v, want each of 1, 2, 3 once", seen)
	}
}
