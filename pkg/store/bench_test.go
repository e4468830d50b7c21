package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
	"github.com/hookline/hookline/pkg/webhook"
)

// testWebhook registers one webhook subscribed to upload.completed.
func testWebhook(b testing.TB, db *store.DB) uuid.UUID {
	b.Helper()
	ctx := context.Background()
	typeID, err := store.EventTypeIDByName(ctx, db, "upload.completed")
	if err != nil {
		b.Fatal(err)
	}
	sec, err := webhook.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	w, err := store.CreateWebhook(ctx, db, store.NewWebhook{UserID: 1, URL: "http://127.0.0.1:9/hook",
		EventTypeIDs: []uuid.UUID{typeID}, Secret: string(sec)})
	if err != nil {
		b.Fatal(err)
	}
	return w.ID
}

// testEvents makes n accepted events of one delivery each, ids unique across calls.
func testEvents(prefix string, n int, hook uuid.UUID) []store.AcceptedEvent {
	now := time.Now().UTC()
	payload := []byte(`{"type":"upload.completed","timestamp":"2026-01-01T00:00:00Z","data":{"n":1}}`)
	evs := make([]store.AcceptedEvent, n)
	for i := range evs {
		id := fmt.Sprintf("%s-%d", prefix, i)
		evs[i] = store.AcceptedEvent{ID: id, Type: "upload.completed", UserID: 1, OccurredAt: now,
			Data: []byte(`{"n":1}`), Deliveries: []store.NewDelivery{{ID: uuid.New(), WebhookID: hook, Payload: payload}}}
	}
	return evs
}

// BenchmarkSaveEvents is the processor's batch writer: events with one delivery each, in one
// statement and one commit (synchronous_commit as the server has it), by batch size.
func BenchmarkSaveEvents(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			db := storetest.New(b)
			hook := testWebhook(b, db)
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				evs := testEvents(fmt.Sprintf("save-%d", i), batch, hook)
				b.StartTimer()
				if _, err := store.SaveEvents(ctx, db, evs, nil, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkRecordOutcomes is the dispatcher's outcome writer, by batch size: "append" is the
// common case (first attempts that succeeded: attempt rows only), "update" the other path
// (attempts that failed and are retried: attempt rows, compare-and-set, endpoint tracking).
func BenchmarkRecordOutcomes(b *testing.B) {
	for _, kind := range []string{"append", "update"} {
		for _, batch := range []int{1, 16, 512} {
			b.Run(fmt.Sprintf("%s/batch=%d", kind, batch), func(b *testing.B) {
				db := storetest.New(b)
				hook := testWebhook(b, db)
				ctx := context.Background()
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					evs := testEvents(fmt.Sprintf("rec-%d", i), batch, hook)
					if _, err := store.SaveEvents(ctx, db, evs, nil, 0, 0); err != nil {
						b.Fatal(err)
					}
					outs := make([]store.Outcome, batch)
					now := time.Now()
					for j, e := range evs {
						outs[j] = store.Outcome{DeliveryID: e.Deliveries[0].ID, WebhookID: hook, Attempt: 1, Attempted: true,
							StatusCode: 200, Latency: time.Millisecond, At: now, Status: delivery.StatusSucceeded, Fresh: true}
						if kind == "update" {
							next := now.Add(time.Hour)
							outs[j].StatusCode, outs[j].Status, outs[j].NextAttemptAt = 500, delivery.StatusRetrying, &next
						}
					}
					b.StartTimer()
					if _, err := store.RecordOutcomes(ctx, db, outs, 120*time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkSplitPoison is a batch of 256 events of which one holds data PostgreSQL refuses
// (a NUL escaped in JSON): the split finds it and writes the other 255.
func BenchmarkSplitPoison(b *testing.B) {
	db := storetest.New(b)
	hook := testWebhook(b, db)
	ctx := context.Background()
	const batch = 256
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		evs := testEvents(fmt.Sprintf("poison-%d", i), batch, hook)
		evs[batch/3].Data = []byte(`{"x":"a\u0000b"}`)
		b.StartTimer()
		var bad int
		err := store.Split(evs, func(part []store.AcceptedEvent) error {
			_, err := store.SaveEvents(ctx, db, part, nil, 0, 0)
			return err
		}, func(store.AcceptedEvent, error) { bad++ })
		if err != nil || bad != 1 {
			b.Fatalf("Split = %v with %d refused, want nil and 1", err, bad)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
}
