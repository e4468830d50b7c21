package store_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/store/storetest"
)

// The migrations round-trip: up (done by storetest), down to nothing, up again; status
// reports each state.
func TestMigrationsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	tables := func() int {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
			WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'bun_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tables(); n != 12 {
		t.Fatalf("after up: %d tables, want 12", n)
	}
	down, err := db.MigrateDown(ctx)
	if err != nil || len(down) == 0 {
		t.Fatalf("MigrateDown = %v, %v", down, err)
	}
	if n := tables(); n != 0 {
		t.Fatalf("after down: %d tables, want 0", n)
	}
	st, err := db.MigrationStatus(ctx)
	if err != nil || len(st) == 0 || st[0].IsApplied() {
		t.Fatalf("status after down = %v, %v; want pending", st, err)
	}
	up, err := db.MigrateUp(ctx)
	if err != nil || len(up) != len(down) {
		t.Fatalf("MigrateUp = %v, %v", up, err)
	}
	if n := tables(); n != 12 {
		t.Fatalf("after up again: %d tables, want 12", n)
	}
	var seeded int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM event_types WHERE name = 'upload.completed' AND description = 'Event type for file upload operations'").Scan(&seeded); err != nil || seeded != 1 {
		t.Fatalf("seeded event type rows = %d, %v", seeded, err)
	}
	if again, err := db.MigrateUp(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second MigrateUp = %v, %v; want nothing to do", again, err)
	}
}
