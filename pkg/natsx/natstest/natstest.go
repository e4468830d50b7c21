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
	return StartWith(tb, nil)
}

// StartWith runs a JetStream server like Start, after edit (if not nil) changed its options
// (e.g. Username and Password to match a deployment's NATS_URL). It stops when the test ends.
func StartWith(tb testing.TB, edit func(*server.Options)) *server.Server {
	tb.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true}
	if edit != nil {
		edit(o)
	}
	s, err := server.NewServer(o)
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
