// Package natstest runs a JetStream server inside a test process, on a random port with a
// temporary store, so tests are isolated and can stop and restart it.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a JetStream server that stops when the test ends.
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	return StartAt(tb, tb.TempDir(), server.RANDOM_PORT)
}

// StartAt runs a server on a given store dir and port, so a test can restart one in place.
func StartAt(tb testing.TB, storeDir string, port int) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: server not ready after 10s")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}
