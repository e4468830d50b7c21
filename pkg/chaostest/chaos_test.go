package chaostest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scenario is one fault under load. inject runs while the load is being sent and returns when
// the fault has ended (the killed or stopped process is running again).
type scenario struct {
	name   string
	events int
	rate   int           // events per second
	delay  time.Duration // the receiver's answer time
	inject func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time
	// defect names a Hookline defect that makes the scenario fail today: it is skipped unless
	// HOOKLINE_CHAOS_KNOWN_DEFECTS=1, so that `make chaos` passes and the defect stays visible.
	defect string
}

// eventsScale multiplies every scenario's event count (HOOKLINE_CHAOS_SCALE, default 1).
func eventsScale() float64 {
	if f, err := strconv.ParseFloat(os.Getenv("HOOKLINE_CHAOS_SCALE"), 64); err == nil && f > 0 {
		return f
	}
	return 1
}

// afterDelivered waits until n deliveries reached the receiver, so a fault lands mid-stream.
func afterDelivered(t *testing.T, rv *receiver, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for rv.distinct() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries arrived before the fault after 90s", rv.distinct(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func kill9(pick func(*stack) *service) func(*testing.T, *stack, *receiver, *loader) time.Time {
	return func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
		afterDelivered(t, rv, 1000)
		sv := pick(s)
		sv.kill(syscall.SIGKILL)
		time.Sleep(time.Second)
		back := time.Now()
		sv.start()
		sv.ready(60 * time.Second)
		return back
	}
}

// sigterm stops a service gracefully with deliveries in flight (the receiver is slow), checks
// that it exits 0 in time, and starts it again.
func sigterm(pick func(*stack) *service) func(*testing.T, *stack, *receiver, *loader) time.Time {
	return func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
		afterDelivered(t, rv, 1000)
		sv := pick(s)
		took := sv.kill(syscall.SIGTERM)
		if code := sv.exitCode(); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", sv.name, code)
		}
		t.Logf("%s exited %.1fs after SIGTERM with %d of the load acknowledged and %d delivered; %s",
			sv.name, took.Seconds(), ld.accepted.Load(), rv.distinct(), consumerState(s))
		time.Sleep(time.Second)
		back := time.Now()
		sv.start()
		sv.ready(60 * time.Second)
		return back
	}
}

var scenarios = []scenario{
	{name: "kill -9 dispatcher", events: 3000, rate: 300,
		inject: kill9(func(s *stack) *service { return s.dispatcher })},
	{name: "kill -9 processor", events: 3000, rate: 300,
		inject: kill9(func(s *stack) *service { return s.processor })},
	{name: "kill -9 ingress, clients retrying the same ids", events: 3000, rate: 300,
		inject: kill9(func(s *stack) *service { return s.ingress })},
	{name: "kill -9 nats-server, restart on the same store", events: 3000, rate: 300,
		inject: func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
			afterDelivered(t, rv, 1000)
			s.nats.kill(syscall.SIGKILL)
			time.Sleep(time.Second)
			back := time.Now()
			s.nats.start()
			waitTCP(t, s.natsURL[len("nats://"):], 30*time.Second)
			return back
		}},
	{name: "PostgreSQL stopped (immediate) for 30 s under load", events: 3000, rate: 75,
		inject: func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
			afterDelivered(t, rv, 300)
			s.pg.stop("immediate")
			time.Sleep(30 * time.Second)
			back := time.Now()
			s.pg.start()
			return back
		}},
	{name: "dispatcher consumer deleted by an operator", events: 3000, rate: 300,
		inject: func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
			afterDelivered(t, rv, 1000)
			deleteConsumer(t, s, "DELIVERIES", "dispatcher")
			return time.Now()
		}},
	{name: "every receiver answers 500 for 20 s, then 200", events: 3000, rate: 100,
		inject: func(t *testing.T, s *stack, rv *receiver, ld *loader) time.Time {
			afterDelivered(t, rv, 500)
			rv.fail(true)
			time.Sleep(20 * time.Second)
			rv.fail(false)
			return time.Now()
		}},
	{name: "SIGTERM dispatcher, deliveries in flight", events: 3000, rate: 1000, delay: time.Second,
		inject: sigterm(func(s *stack) *service { return s.dispatcher })},
	{name: "SIGTERM processor, deliveries in flight", events: 3000, rate: 1000, delay: 100 * time.Millisecond,
		inject: sigterm(func(s *stack) *service { return s.processor })},
	{name: "SIGTERM ingress, deliveries in flight", events: 3000, rate: 1000, delay: 100 * time.Millisecond,
		inject: sigterm(func(s *stack) *service { return s.ingress })},
}

// TestChaos runs every scenario against its own database (in one private PostgreSQL cluster),
// nats-server and services. HOOKLINE_CHAOS_RUN selects scenarios by subtest name (-run works
// too).
func TestChaos(t *testing.T) {
	skipUnlessChaos(t)
	buildBinaries(t)
	pg := newPGCluster(t)
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.defect != "" && os.Getenv("HOOKLINE_CHAOS_KNOWN_DEFECTS") == "" {
				t.Skipf("known defect (HOOKLINE_CHAOS_KNOWN_DEFECTS=1 runs it): %s", sc.defect)
			}
			rv := newReceiver(t, sc.delay)
			s := newStack(t, pg, fmt.Sprintf("chaos_%d_%d", os.Getpid(), i), rv)
			n := int(float64(sc.events) * eventsScale())
			ld := startLoad(t, s, n, sc.rate, time.Duration(n/sc.rate)*time.Second+90*time.Second)
			faultEnd := sc.inject(t, s, rv, ld)
			ld.wait()
			r := check(t, sc.name, s, rv, ld, faultEnd, 120*time.Second)
			verdict(t, r)
			// Each scenario's processes end with it, so the next starts on a quiet machine.
			for _, sv := range s.services() {
				sv.kill(syscall.SIGKILL)
			}
			s.nats.kill(syscall.SIGKILL)
		})
	}
}

func deleteConsumer(t *testing.T, s *stack, stream, name string) {
	t.Helper()
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, stream, name); err != nil {
		t.Fatalf("delete consumer %s/%s: %v", stream, name, err)
	}
}
