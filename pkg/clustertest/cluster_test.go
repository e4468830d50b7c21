package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
)

// skipUnlessCluster keeps the cluster suite out of `make test`: it starts nats-server
// processes and, for the fault tests, the services under load for minutes.
func skipUnlessCluster(t *testing.T) {
	t.Helper()
	if os.Getenv("HOOKLINE_CLUSTER") == "" {
		t.Skip("cluster test: run with HOOKLINE_CLUSTER=1 (make cluster)")
	}
}

// TestHarness checks the harness itself: Hookline's topology at R3 on three nodes (streams and
// consumers replicated), a client on the comma-separated URLs, a leader killed and replaced,
// the node restarted and caught up, and a partitioned node losing its leadership while its
// clients stay connected.
func TestHarness(t *testing.T) {
	skipUnlessCluster(t)
	c := StartCluster(t, 3)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsx.Connect(c.URLs(), nil, "harness", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topo := natsx.DefaultTopology()
	topo.Replicas = 3
	if err := natsx.Setup(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ stream, consumer string }{{natsx.EventsStream, natsx.ProcessorConsumer}, {natsx.DeliveriesStream, natsx.DispatchConsumer}} {
		si, err := c.StreamInfo(s.stream)
		if err != nil {
			t.Fatal(err)
		}
		if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
			t.Fatalf("%s: replicas %d, cluster %+v", s.stream, si.Config.Replicas, si.Cluster)
		}
		ci, err := c.ConsumerInfo(s.stream, s.consumer)
		if err != nil {
			t.Fatal(err)
		}
		if ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
			t.Fatalf("consumer %s: cluster %+v (config replicas %d)", s.consumer, ci.Cluster, ci.Config.Replicas)
		}
	}

	publish := func(js jetstream.JetStream, n int) {
		t.Helper()
		for i := range n {
			if _, err := js.Publish(ctx, "events.harness", []byte("x"), jetstream.WithMsgID(fmt.Sprintf("h-%d-%d", time.Now().UnixNano(), i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(js, 100)
	leader := c.LeaderOf(natsx.EventsStream)
	c.Kill(leader)
	if next := c.LeaderOf(natsx.EventsStream); next == leader {
		t.Fatalf("leader still %d after its kill", leader)
	}
	publish(js, 100) // on the two left
	c.Restart(leader)
	if seq := c.WaitCaughtUp(natsx.EventsStream, 200, time.Minute); seq != 200 {
		t.Fatalf("last sequence %d, want 200", seq)
	}

	leader = c.LeaderOf(natsx.EventsStream)
	cut, err := nats.Connect(c.Node(leader).URL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	c.Partition(leader)
	if next := c.LeaderOf(natsx.EventsStream); next == leader {
		t.Fatalf("leader still %d in its partition", leader)
	}
	if !cut.IsConnected() {
		t.Fatal("a client of the cut-off node lost its connection")
	}
	cutJS, _ := jetstream.New(cut)
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cutJS.Publish(pctx, "events.harness", []byte("minority"))
	pcancel()
	if err == nil {
		t.Fatal("a publish to the cut-off node was acknowledged")
	}
	// nats.go stays on a node that answers, even one cut off: publish through another.
	majority, err := nats.Connect(c.Node((leader + 1) % 3).URL())
	if err != nil {
		t.Fatal(err)
	}
	defer majority.Close()
	mjs, _ := jetstream.New(majority)
	publish(mjs, 50)
	c.Heal(leader)
	if seq := c.WaitCaughtUp(natsx.EventsStream, 250, time.Minute); seq != 250 {
		t.Fatalf("last sequence %d after the heal, want 250", seq)
	}
}
