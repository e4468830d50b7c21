// Package embedded runs a nats-server with JetStream inside the all-in-one process.
package embedded

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options of the embedded server.
type Options struct {
	Listen     string // client address; port 0 = random
	Monitor    string // monitoring (/varz, /jsz, …) address; port 0 = random, "" = off
	StoreDir   string // JetStream file store
	User       string // optional client credentials
	Password   string
	SyncAlways bool // fsync every write instead of JetStream's periodic sync
}

// Start runs the server and waits until it accepts connections. Call Shutdown and
// WaitForShutdown on the result.
func Start(o Options) (*server.Server, error) {
	host, port, err := splitPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", o.Listen, err)
	}
	opts := &server.Options{
		ServerName: "hookline",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(o.StoreDir),
		NoSigs:     true, // the process owns signals, not the server
		NoLog:      true,
		Username:   o.User,
		Password:   o.Password,
		SyncAlways: o.SyncAlways,
		// The server's own limits on a client's pending data; the dispatcher and processor
		// read with flow control so this is a safety net.
		MaxPayload: 8 << 20,
	}
	if o.Monitor != "" {
		mh, mp, err := splitPort(o.Monitor)
		if err != nil {
			return nil, fmt.Errorf("nats monitor %q: %w", o.Monitor, err)
		}
		opts.HTTPHost, opts.HTTPPort = mh, mp
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats not ready after 30s on %s", o.Listen)
	}
	return s, nil
}

// splitPort maps a port of 0 to nats-server's RANDOM_PORT (its own 0 means the default 4222).
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
