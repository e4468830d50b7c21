package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// Split finds every row PostgreSQL refuses for its data, wherever it sits in the batch, and
// writes the others; a non-data error stops it.
func TestSplitFindsPoisonRows(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	hook := testWebhook(t, db)
	evs := testEvents("split", 20, hook)
	for _, i := range []int{0, 7, 8, 19} {
		evs[i].Data = []byte(`{"x":"\u0000"}`)
	}
	var bad []string
	err := store.Split(evs, func(part []store.AcceptedEvent) error {
		_, err := store.SaveEvents(ctx, db, part, nil, 0, 0)
		return err
	}, func(e store.AcceptedEvent, err error) {
		if !store.IsDataError(err) {
			t.Errorf("bad(%s) got %v, want a data error", e.ID, err)
		}
		bad = append(bad, e.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(bad) != "[split-0 split-7 split-8 split-19]" {
		t.Errorf("refused rows = %v, want split-0, 7, 8 and 19", bad)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 16 {
		t.Errorf("events written = %d (%v), want 16", n, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err = store.Split(testEvents("gone", 4, hook), func(part []store.AcceptedEvent) error {
		_, err := store.SaveEvents(cancelled, db, part, nil, 0, 0)
		return err
	}, func(store.AcceptedEvent, error) { t.Error("a cancelled write is not a poison row") })
	if err == nil {
		t.Error("Split with a cancelled context = nil, want the error")
	}
}
