package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster runs n JetStream servers in this process, clustered over routes on loopback
// (random ports, a store directory each under dir, default sync like the embedded server),
// and returns them and their client URLs joined with commas (NATS_URL). It returns once the
// cluster has a JetStream meta leader.
func startCluster(ctx context.Context, dir string, n int) ([]*server.Server, string, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, "", err
		}
		ports[i] = p
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(p))})
	}
	var (
		servers []*server.Server
		urls    []string
	)
	stop := func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: filepath.Join(dir, name), NoLog: true, NoSigs: true, MaxPayload: 8 << 20, // as the embedded server
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: ports[i]}, Routes: routes}
		s, err := server.NewServer(o)
		if err != nil {
			stop()
			return nil, "", err
		}
		s.Start()
		servers = append(servers, s)
		if !s.ReadyForConnections(30 * time.Second) {
			stop()
			return nil, "", fmt.Errorf("nats node %s not ready after 30s", name)
		}
		urls = append(urls, s.ClientURL())
	}
	joined := strings.Join(urls, ",")
	// The meta leader is elected a moment after the routes connect; until then a JetStream
	// request may go unanswered, so each try has a short deadline.
	nc, err := nats.Connect(joined)
	if err != nil {
		stop()
		return nil, "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		stop()
		return nil, "", err
	}
	err = waitFor(ctx, 60*time.Second, func() bool {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(tctx)
		return err == nil
	})
	if err != nil {
		stop()
		return nil, "", fmt.Errorf("nats cluster has no JetStream meta leader: %w", err)
	}
	return servers, joined, nil
}
