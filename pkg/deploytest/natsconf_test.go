package deploytest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
)

// loadNATSConf parses deployments/nats/nats-server.conf with nats-server's own loader, with
// the environment a node gets.
func loadNATSConf(t *testing.T, name string) *server.Options {
	t.Helper()
	t.Setenv("NATS_SERVER_NAME", name)
	t.Setenv("NATS_USER", "hookline")
	t.Setenv("NATS_PASSWORD", "natssecret0123456789")
	o, err := server.ProcessConfigFile(filepath.Join(root(t), "deployments", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatalf("deployments/nats/nats-server.conf: %v", err)
	}
	return o
}

// The production config says what docs/scaling.md says: a named node of a three-node cluster
// with JetStream, a 10 s sync interval, limits, and monitoring on 8222.
func TestNATSConfig(t *testing.T) {
	o := loadNATSConf(t, "nats-1")
	checks := []struct {
		what      string
		got, want any
	}{
		{"server_name", o.ServerName, "nats-1"},
		{"client port", o.Port, 4222},
		{"monitoring port", o.HTTPPort, 8222},
		{"jetstream", o.JetStream, true},
		{"store_dir", o.StoreDir, "/data/jetstream"},
		{"sync_interval", o.SyncInterval, 10 * time.Second},
		{"sync always", o.SyncAlways, false},
		{"max_file_store", o.JetStreamMaxStore, int64(1 << 40)},
		{"max_payload", o.MaxPayload, int32(2 << 20)},
		{"max_connections", o.MaxConn, 4096},
		{"write_deadline", o.WriteDeadline, 10 * time.Second},
		{"user", o.Username, "hookline"},
		{"cluster name", o.Cluster.Name, "hookline"},
		{"cluster port", o.Cluster.Port, 6222},
		{"routes", len(o.Routes), 3},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	// The largest event body the ingress accepts (HOOKLINE_MAX_BODY_BYTES, 1 MiB) fits.
	if o.MaxPayload < 1<<20+64<<10 {
		t.Errorf("max_payload %d is under a 1 MiB event plus its headers", o.MaxPayload)
	}
}

// Three nodes started from the production config (ports, routes and store moved to loopback
// and temp dirs) form a cluster on which Hookline's streams, consumers and buckets are created
// at R3, each with a leader and two current followers.
func TestNATSConfigStartsACluster(t *testing.T) {
	ports := make([]int, 3)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	for i := range 3 {
		o := loadNATSConf(t, fmt.Sprintf("nats-%d", i+1))
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
		o.Cluster.Host, o.Cluster.Port, o.Routes = "127.0.0.1", ports[i], routes
		o.StoreDir = t.TempDir()
		o.JetStreamMaxStore, o.JetStreamMaxMemory = 1<<30, 64<<20
		o.NoLog, o.NoSigs = true, true
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-%d not ready after 10s", i+1)
		}
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(urls[0]+","+urls[1]+","+urls[2], nats.UserInfo("hookline", "natssecret0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	topo := natsx.DefaultTopology()
	topo.Replicas = 3
	// The meta leader is elected a moment after the routes connect: until then a request may
	// go unanswered, so each try has its own short deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		err = natsx.Setup(tctx, js, topo)
		tcancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("natsx.Setup at R3: %v", err)
	}
	if _, err := natsx.SetupLeases(ctx, js, natsx.DefaultLeaseTTL, 3); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{natsx.EventsStream, natsx.DeliveriesStream, "KV_" + natsx.LeasesBucket} {
		var info *jetstream.StreamInfo
		for {
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			if info, err = st.Info(ctx); err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			current := 0
			for _, r := range info.Cluster.Replicas {
				if r.Current {
					current++
				}
			}
			if info.Cluster.Leader != "" && current == 2 || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if info.Config.Replicas != 3 || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: replicas %d, leader %q, followers %+v; want R3 with a leader and two followers",
				name, info.Config.Replicas, info.Cluster.Leader, info.Cluster.Replicas)
		}
	}
}
