package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// A query against a PostgreSQL that is not there is IsUnavailable; a query PostgreSQL refuses
// is not.
func TestIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = store.Open(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2", 1)
	if err == nil || !store.IsUnavailable(err) {
		t.Fatalf("Open against a closed port = %v; IsUnavailable = false, want true", err)
	}

	db := storetest.New(t)
	_, err = db.ExecContext(ctx, "SELECT * FROM no_such_table")
	if err == nil || store.IsUnavailable(err) {
		t.Fatalf("a bad query = %v; IsUnavailable = true, want false", err)
	}
	for _, e := range []error{
		fmt.Errorf("load: %w", &pgconn.PgError{Code: "57P01"}),
		fmt.Errorf("load: %w", store.ErrUnavailable),
	} {
		if !store.IsUnavailable(e) {
			t.Errorf("IsUnavailable(%v) = false, want true", e)
		}
	}
	if store.IsUnavailable(errors.New("webhook not found")) || store.IsUnavailable(&pgconn.PgError{Code: "22P05"}) {
		t.Error("IsUnavailable of a not-found or data error = true, want false")
	}
}
