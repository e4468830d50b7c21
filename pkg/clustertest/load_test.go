package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/processor"
)

// scaled is n times HOOKLINE_CLUSTER_SCALE (default 1; e.g. 0.1 for a quick run).
func scaled(n int) int {
	if f, err := strconv.ParseFloat(os.Getenv("HOOKLINE_CLUSTER_SCALE"), 64); err == nil && f > 0 {
		return max(1, int(float64(n)*f))
	}
	return n
}

// event is one event of the load and when it was acknowledged (zero: never).
type event struct {
	id       string
	user     int
	viaAPI   bool
	accepted time.Time
}

// loader sends events at up to rate per second, half through POST /events (round robin over
// the running ingress replicas) and half straight to NATS, and retries each with the same id
// until it is acknowledged.
type loader struct {
	events   []event
	wg       sync.WaitGroup
	ended    time.Time
	accepted atomic.Int64
	apiErrs  atomic.Int64
	natsErrs atomic.Int64
	rr       atomic.Int64
}

func startLoad(t *testing.T, s *system, n, rate int) *loader {
	return startLoadGated(t, s, n, rate, n, nil)
}

// startLoadGated is startLoad whose events from the gated-th on wait until gate is closed.
func startLoadGated(t *testing.T, s *system, n, rate, gated int, gate <-chan struct{}) *loader {
	t.Helper()
	// Like a service: every node's URL. A publish that gets no ack within 5 s is retried with
	// the same Nats-Msg-Id (on the same node, if it is the one cut off: nats.go stays).
	nc, err := nats.Connect(s.c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ld := &loader{events: make([]event, n)}
	prefix := fmt.Sprintf("cl-%d-", time.Now().UnixNano())
	for i := range ld.events {
		ld.events[i] = event{id: prefix + strconv.Itoa(i), user: i%users + 1, viaAPI: i%2 == 0}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	next := make(chan int)
	stop := time.Now().Add(5 * time.Minute)
	for range 48 {
		ld.wg.Go(func() {
			for i := range next {
				ld.send(s, client, js, &ld.events[i], stop)
			}
		})
	}
	ld.wg.Go(func() {
		defer close(next)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := range n {
			if i == gated && gate != nil {
				<-gate
			}
			<-tick.C
			next <- i
		}
	})
	go func() { ld.wg.Wait(); ld.ended = time.Now() }()
	return ld
}

func (ld *loader) send(s *system, client *http.Client, js jetstream.JetStream, e *event, stop time.Time) {
	body, _ := json.Marshal(map[string]any{"id": e.id, "type": eventType, "user_id": e.user, "data": map[string]any{"id": e.id}})
	for time.Now().Before(stop) {
		if e.viaAPI {
			ing := s.ingress[int(ld.rr.Add(1))%len(s.ingress)]
			if !ing.running() {
				continue
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+ing.addr+"/events", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					e.accepted = time.Now()
					ld.accepted.Add(1)
					return
				}
			}
			ld.apiErrs.Add(1)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: "events." + eventType, Data: body,
				Header: nats.Header{nats.MsgIdHdr: []string{e.id}}})
			cancel()
			if err == nil {
				e.accepted = time.Now()
				ld.accepted.Add(1)
				return
			}
			ld.natsErrs.Add(1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAccepted waits until n events are acknowledged.
func (ld *loader) waitAccepted(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for ld.accepted.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events acknowledged after 5 min", ld.accepted.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// result is one scenario run's figures, logged and appended to HOOKLINE_CLUSTER_REPORT.
type result struct {
	Scenario   string    `json:"scenario"`
	Events     int       `json:"events"`        // acknowledged
	InFlight   int       `json:"in_flight"`     // acknowledged and not yet delivered when the fault began
	Expected   int       `json:"expected"`      // deliveries owed
	Lost       int       `json:"lost"`          // owed and not received by the end of the wait
	Duplicates int       `json:"duplicates"`    // requests beyond the first per webhook-id
	Recover    float64   `json:"recover_s"`     // fault end -> last owed delivery of events acknowledged before it
	Drain      float64   `json:"drain_s"`       // fault end -> last owed delivery
	Unexpected int       `json:"unexpected"`    // webhook-ids not owed
	Retried    int64     `json:"retried_sends"` // event sends retried (API or NATS errors)
	Notes      string    `json:"notes,omitempty"`
	At         time.Time `json:"at"`
}

// check waits until every delivery owed for the acknowledged events arrived, or until within
// after the later of the load's end and faultEnd, and returns the figures.
func (s *system) check(t *testing.T, name string, ld *loader, faultStart, faultEnd time.Time, within time.Duration) result {
	t.Helper()
	ld.wg.Wait()
	r := result{Scenario: name, At: time.Now().UTC(), Retried: ld.apiErrs.Load() + ld.natsErrs.Load()}
	owed := map[string]time.Time{}
	for _, e := range ld.events {
		if e.accepted.IsZero() {
			continue
		}
		r.Events++
		owed[processor.DeliveryID(e.id, s.webhooks[e.user]).String()] = e.accepted
	}
	r.Expected = len(owed)
	end := ld.ended
	if faultEnd.After(end) {
		end = faultEnd
	}
	deadline := end.Add(within)
	missing := func() int {
		s.rv.mu.Lock()
		defer s.rv.mu.Unlock()
		n := 0
		for id := range owed {
			if s.rv.seen[id] == 0 {
				n++
			}
		}
		return n
	}
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // late duplicates
	s.rv.mu.Lock()
	defer s.rv.mu.Unlock()
	var lastBefore, last time.Time
	for id, acc := range owed {
		first, ok := s.rv.first[id]
		if !ok {
			r.Lost++
			continue
		}
		if first.Before(faultStart) {
			r.InFlight-- // counted below as acknowledged before the fault
		}
		if first.After(last) {
			last = first
		}
		if acc.Before(faultEnd) && first.After(lastBefore) {
			lastBefore = first
		}
	}
	for _, acc := range owed {
		if acc.Before(faultStart) {
			r.InFlight++
		}
	}
	for id, n := range s.rv.seen {
		if _, ok := owed[id]; !ok {
			r.Unexpected++
		}
		r.Duplicates += n - 1
	}
	r.Recover = max(0, lastBefore.Sub(faultEnd).Seconds())
	r.Drain = max(0, last.Sub(faultEnd).Seconds())
	return r
}

// report logs r, appends it to HOOKLINE_CLUSTER_REPORT and checks what every fault must keep:
// nothing lost, nothing unexpected, duplicates under 1%.
func report(t *testing.T, r result) {
	t.Helper()
	line, _ := json.Marshal(r)
	t.Logf("result: %s", line)
	if p := os.Getenv("HOOKLINE_CLUSTER_REPORT"); p != "" {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			fmt.Fprintf(f, "%s\n", line)
			f.Close()
		}
	}
	if r.Lost > 0 {
		t.Errorf("%s: %d of %d deliveries lost", r.Scenario, r.Lost, r.Expected)
	}
	if r.Unexpected > 0 {
		t.Errorf("%s: %d unexpected webhook-ids", r.Scenario, r.Unexpected)
	}
	if r.Duplicates*100 >= r.Expected && r.Expected > 0 {
		t.Errorf("%s: %d duplicates of %d deliveries (1%% or more)", r.Scenario, r.Duplicates, r.Expected)
	}
}

// throughput is the receiver's new deliveries per second from..to, one figure per second.
func (rv *receiver) throughput(from, to time.Time) []int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var out []int
	for sec := from.Unix(); sec <= to.Unix(); sec++ {
		out = append(out, rv.perSec[sec])
	}
	return out
}

func median(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := append([]int(nil), v...)
	sort.Ints(s)
	return s[len(s)/2]
}
