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

// benchWebhook registers one webhook subscribed to upload.completed.
func benchWebhook(b *testing.B, db *store.DB) uuid.UUID {
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

// benchEvents makes n accepted events of one delivery each, ids unique across calls.
func benchEvents(prefix string, n int, hook uuid.UUID) []store.AcceptedEvent {
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

// BenchmarkSaveEvents is the processor's batch: 256 events with one delivery each in one
// transaction (synchronous_commit as the server has it).
func BenchmarkSaveEvents(b *testing.B) {
	db := storetest.New(b)
	hook := benchWebhook(b, db)
	ctx := context.Background()
	const batch = 256
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		evs := benchEvents(fmt.Sprintf("save-%d", i), batch, hook)
		b.StartTimer()
		if _, err := store.SaveEvents(ctx, db, evs, nil, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRecordOutcomes is the dispatcher's batch writer: 512 successful first attempts in
// one transaction (attempt rows, delivery compare-and-set, endpoint tracking).
func BenchmarkRecordOutcomes(b *testing.B) {
	db := storetest.New(b)
	hook := benchWebhook(b, db)
	ctx := context.Background()
	const batch = 512
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		evs := benchEvents(fmt.Sprintf("rec-%d", i), batch, hook)
		if _, err := store.SaveEvents(ctx, db, evs, nil, 0); err != nil {
			b.Fatal(err)
		}
		outs := make([]store.Outcome, batch)
		now := time.Now()
		for j, e := range evs {
			outs[j] = store.Outcome{DeliveryID: e.Deliveries[0].ID, WebhookID: hook, Attempt: 1, Attempted: true,
				StatusCode: 200, Latency: time.Millisecond, At: now, Status: delivery.StatusSucceeded}
		}
		b.StartTimer()
		if _, err := store.RecordOutcomes(ctx, db, outs, 120*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "outcomes/s")
}

// BenchmarkRecordOutcome1 is one outcome per transaction: the cost a batch amortizes (one
// commit, one fsync).
func BenchmarkRecordOutcome1(b *testing.B) {
	db := storetest.New(b)
	hook := benchWebhook(b, db)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		evs := benchEvents(fmt.Sprintf("one-%d", i), 1, hook)
		if _, err := store.SaveEvents(ctx, db, evs, nil, 0); err != nil {
			b.Fatal(err)
		}
		out := store.Outcome{DeliveryID: evs[0].Deliveries[0].ID, WebhookID: hook, Attempt: 1, Attempted: true,
			StatusCode: 200, At: time.Now(), Status: delivery.StatusSucceeded}
		b.StartTimer()
		if _, err := store.RecordOutcomes(ctx, db, []store.Outcome{out}, 120*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
