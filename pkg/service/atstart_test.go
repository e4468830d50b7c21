package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// A set-up that fails at first (a cluster still placing its peers) is tried again until it
// succeeds, instead of the process exiting on the first error; a cancelled start gives up.
func TestAtStartRetriesSetup(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tries := 0
	err := atStart(context.Background(), log, "streams", func(context.Context) error {
		if tries++; tries < 3 {
			return errors.New("no suitable peers for placement")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("atStart = %v after %d tries, want nil after 3", err, tries)
	}

	ctx, cancel := context.WithCancel(context.Background())
	tries = 0
	err = atStart(ctx, log, "streams", func(context.Context) error {
		tries++
		cancel()
		return errors.New("context deadline exceeded")
	})
	if err == nil || tries != 1 {
		t.Fatalf("cancelled atStart = %v after %d tries, want the error after 1", err, tries)
	}
}
