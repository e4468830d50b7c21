package store_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/store/storetest"
)

// The processor caches who receives an event, with each webhook's filter and each type's
// schema, and trusts the cache while subscription_version stands still: every change to what
// it caches moves the version, and a change to something it does not cache does not.
func TestSubscriptionVersionMoves(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	hook := testWebhook(t, db)
	version := func() int64 {
		var v int64
		if err := db.QueryRowContext(ctx, "SELECT version FROM subscription_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		change string
		moves  bool
	}{
		{`UPDATE webhook_registrations SET filter = '{"data.a":1}' WHERE id = $1`, true},
		{`UPDATE webhook_registrations SET filter = '{"data.a":1}' WHERE id = $1`, false}, // the same value
		{`UPDATE webhook_registrations SET filter = NULL WHERE id = $1`, true},
		{`UPDATE event_types SET schema = '{"type":"object"}' WHERE name = 'upload.completed' AND $1::uuid IS NOT NULL`, true},
		{`UPDATE event_types SET description = 'x' WHERE name = 'upload.completed' AND $1::uuid IS NOT NULL`, false},
		{`UPDATE webhook_registrations SET url = 'http://127.0.0.1:8/' WHERE id = $1`, false},
	} {
		before := version()
		if _, err := db.ExecContext(ctx, c.change, hook); err != nil {
			t.Fatalf("%s: %v", c.change, err)
		}
		if moved := version() != before; moved != c.moves {
			t.Errorf("%s: version moved = %v, want %v", c.change, moved, c.moves)
		}
	}
}
