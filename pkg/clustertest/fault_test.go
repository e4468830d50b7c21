package clustertest

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natsx"
)

// servicesUnrestarted fails the test if a service process exited or was started twice.
func (s *system) servicesUnrestarted(t *testing.T, except ...*service) {
	t.Helper()
	for _, sv := range s.services() {
		skip := false
		for _, e := range except {
			skip = skip || e == sv
		}
		if !skip && (!sv.running() || sv.runs != 1) {
			t.Errorf("%s: running %v, started %d times", sv.name, sv.running(), sv.runs)
		}
	}
}

// caughtUp waits until the three nodes report the same last sequence of both streams.
func (s *system) caughtUp(t *testing.T) string {
	t.Helper()
	ev := s.c.WaitCaughtUp(natsx.EventsStream, 1, 2*time.Minute)
	dl := s.c.WaitCaughtUp(natsx.DeliveriesStream, 1, 2*time.Minute)
	return fmt.Sprintf("all nodes at EVENTS last seq %d, DELIVERIES %d", ev, dl)
}

// TestClusterKillLeader kills (SIGKILL) the node leading EVENTS, then in another run the one
// leading DELIVERIES, once 20,000 events are acknowledged and in flight: a new leader is
// elected, every delivery arrives without restarting a service, and the node, started again
// on its store, catches up. The stream's leader is first moved to the node most services use.
func TestClusterKillLeader(t *testing.T) {
	skipUnlessCluster(t)
	for _, stream := range []string{natsx.EventsStream, natsx.DeliveriesStream} {
		t.Run(stream, func(t *testing.T) {
			s := newSystem(t, 2, 2, 2)
			n := scaled(20000)
			s.hold(true) // every event acknowledged and none processed when the node dies
			ld := startLoad(t, s, n, 4000)
			ld.waitAccepted(t, n)
			// The node with the most processors and dispatchers connected leads the stream,
			// so the kill also makes services move to another node.
			leader, most := s.c.LeaderOf(stream), -1
			for i := range s.c.N() {
				p, _ := s.c.ClientsNamed(i, "hookline-processor")
				d, _ := s.c.ClientsNamed(i, "hookline-dispatcher")
				if p+d > most {
					leader, most = i, p+d
				}
			}
			s.c.MoveLeader(stream, "", leader)
			start := time.Now()
			s.c.Kill(leader)
			s.hold(false)
			next := s.c.LeaderOf(stream)
			if next == leader {
				t.Fatalf("%s still led by killed node %d", stream, leader)
			}
			elected := time.Since(start)
			r := s.check(t, "kill -9 the "+stream+" leader's node", ld, start, start, 3*time.Minute)
			s.servicesUnrestarted(t)
			s.c.Restart(leader)
			r.Notes = fmt.Sprintf("new leader n%d in %.1fs; node restarted after the drain: %s", next, elected.Seconds(), s.caughtUp(t))
			report(t, r)
		})
	}
}

// TestClusterPartition cuts the EVENTS leader's node off from the other two for 30 s (its
// route connections closed by the proxies, its clients still connected to it) with 20,000
// acknowledged events in flight and 2,000 more sent meanwhile, then heals it. The node is made to lead DELIVERIES and both
// consumers too, so the services connected to it lose everything at once.
func TestClusterPartition(t *testing.T) {
	skipUnlessCluster(t)
	s := newSystem(t, 2, 2, 3)
	n := scaled(20000)
	// The worst case: the cut-off node leads both streams and both consumers.
	cut := s.c.LeaderOf(natsx.EventsStream)
	s.c.MoveLeader(natsx.DeliveriesStream, "", cut)
	s.c.MoveLeader(natsx.EventsStream, natsx.ProcessorConsumer, cut)
	s.c.MoveLeader(natsx.DeliveriesStream, natsx.DispatchConsumer, cut)
	// n events acknowledged and none processed yet when the node is cut off; n/10 more are
	// sent during the partition (some through the cut-off node, retried with the same id).
	s.hold(true)
	gate := make(chan struct{})
	ld := startLoadGated(t, s, n+n/10, 4000, n, gate)
	ld.waitAccepted(t, n)
	if s.c.LeaderOf(natsx.EventsStream) != cut {
		t.Fatal("EVENTS' leader moved")
	}
	start := time.Now()
	s.c.Partition(cut)
	s.hold(false)
	time.Sleep(time.Second)
	close(gate)
	time.Sleep(29 * time.Second)
	s.c.Heal(cut)
	healed := time.Now()
	r := s.check(t, "partition: the EVENTS leader's node cut off for 30 s", ld, start, healed, 3*time.Minute)
	s.servicesUnrestarted(t)
	r.Notes = fmt.Sprintf("node n%d cut off; %s", cut, s.caughtUp(t))
	report(t, r)
}

// TestClusterPartitionHeldDeliveries cuts off a node that a dispatcher is connected to while
// that dispatcher holds deliveries waiting for a slow receiver (1 s a request), with the
// dispatcher consumer's leader on the other side: the consumer's leader stops hearing from the
// cut-off dispatcher (acks, in-progress reports) and hands its messages to the others after
// AckWait, while the cut-off dispatcher still has them.
func TestClusterPartitionHeldDeliveries(t *testing.T) {
	skipUnlessCluster(t)
	s := newSystem(t, 2, 2, 3)
	s.rv.mu.Lock()
	s.rv.delay = time.Second
	s.rv.mu.Unlock()
	cut := -1
	for i := range s.c.N() {
		if k, err := s.c.ClientsNamed(i, "hookline-dispatcher"); err == nil && k > 0 {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatal("no node with a dispatcher connected")
	}
	other := (cut + 1) % s.c.N()
	s.c.MoveLeader(natsx.EventsStream, "", cut)
	s.c.MoveLeader(natsx.DeliveriesStream, "", other)
	s.c.MoveLeader(natsx.DeliveriesStream, natsx.DispatchConsumer, other)
	n := scaled(5000)
	s.hold(true)
	ld := startLoad(t, s, n, 4000)
	ld.waitAccepted(t, n)
	s.hold(false)
	time.Sleep(3 * time.Second) // every dispatcher holds a full buffer
	start := time.Now()
	s.c.Partition(cut)
	time.Sleep(30 * time.Second)
	s.c.Heal(cut)
	healed := time.Now()
	r := s.check(t, "partition: a node with a dispatcher holding deliveries (receiver 1 s) cut off for 30 s", ld, start, healed, 3*time.Minute)
	s.servicesUnrestarted(t)
	r.Notes = fmt.Sprintf("node n%d cut off; %s", cut, s.caughtUp(t))
	report(t, r)
	if r.Duplicates*500 > r.Expected {
		// The cut-off dispatcher must not attempt what it held once it lost contact, and a
		// redelivered copy of a handed-back message must not pass store.AttemptDue: 27 of
		// 5,000 were sent twice before 505ec51, 0 and 2 after it, 0 in every run once
		// AttemptDue also compared the scheduling key (docs/reliability.md). The bound is
		// 0.2%, tighter than the 1% of the other faults.
		t.Errorf("%d of %d deliveries sent twice (more than 0.2%%)", r.Duplicates, r.Expected)
	}
}

// TestClusterRollingRestart restarts the three nodes one at a time (SIGTERM, start on the
// same store, wait until healthy) under load: nothing lost, no stream or consumer recreated.
func TestClusterRollingRestart(t *testing.T) {
	skipUnlessCluster(t)
	s := newSystem(t, 2, 2, 2)
	created := func() map[string]time.Time {
		out := map[string]time.Time{}
		for _, sc := range []struct{ stream, consumer string }{{natsx.EventsStream, natsx.ProcessorConsumer}, {natsx.DeliveriesStream, natsx.DispatchConsumer}} {
			si, err := s.c.StreamInfo(sc.stream)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := s.c.ConsumerInfo(sc.stream, sc.consumer)
			if err != nil {
				t.Fatal(err)
			}
			out[sc.stream], out[sc.consumer] = si.Created, ci.Created
		}
		return out
	}
	before := created()
	n := scaled(20000)
	ld := startLoad(t, s, n, 500)
	ld.waitAccepted(t, n/5)
	start := time.Now()
	var windows [][2]time.Time
	for i := range s.c.N() {
		from := time.Now()
		s.c.Stop(i)
		s.c.StartNode(i)
		s.c.WaitHealthy(i, 2*time.Minute)
		windows = append(windows, [2]time.Time{from, time.Now()})
	}
	end := time.Now()
	r := s.check(t, "rolling restart of the three nodes under load (500 events/s)", ld, start, end, 3*time.Minute)
	s.servicesUnrestarted(t)
	after := created()
	for k, v := range before {
		if !after[k].Equal(v) {
			t.Errorf("%s recreated: created %v, now %v", k, v, after[k])
		}
	}
	steady := median(s.rv.throughput(start.Add(-10*time.Second), start.Add(-time.Second)))
	r.Notes = fmt.Sprintf("deliveries/s before: %d; during each node's restart (min/median):", steady)
	for i, w := range windows {
		tp := s.rv.throughput(w[0], w[1])
		lo := tp[0]
		for _, v := range tp {
			lo = min(lo, v)
		}
		r.Notes += fmt.Sprintf(" n%d %.0fs %d/%d;", i, w[1].Sub(w[0]).Seconds(), lo, median(tp))
	}
	r.Notes += " " + s.caughtUp(t)
	report(t, r)
}

// TestClusterKillServiceReplicas kills (SIGKILL) one replica of each service under load while
// the others go on, and does not start them again.
func TestClusterKillServiceReplicas(t *testing.T) {
	skipUnlessCluster(t)
	s := newSystem(t, 2, 2, 3)
	n := scaled(20000)
	s.hold(true) // the killed replicas hold messages, the others have a backlog to take over
	ld := startLoad(t, s, n, 4000)
	ld.waitAccepted(t, n/2)
	s.hold(false)
	for ld.accepted.Load() < int64(n*3/4) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	killed := []*service{s.ingress[0], s.processors[0], s.dispatchers[0]}
	for _, sv := range killed {
		sv.kill(syscall.SIGKILL)
	}
	r := s.check(t, "kill -9 one replica of each service (2 ingress, 2 processors, 3 dispatchers)", ld, start, start, 3*time.Minute)
	s.servicesUnrestarted(t, killed...)
	report(t, r)
}
