package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
)

// The crash scenario treats Hookline as a black box and relies only on its public contracts
// (DESIGN §10): the all-in-one binary and its environment settings, POST /event_type,
// POST /webhook/register, events.<type> on its embedded NATS, the webhook-id header, /readyz
// and the consumer gauges of /metrics. One run: start `hookline` as a child process, register
// one webhook to one healthy receiver, publish the events (a publisher that retries every
// unacknowledged publish with the same Nats-Msg-Id, as a real producer does), SIGKILL the
// process once a quarter have been received, restart it at once on the same data dir and
// database, and count what arrives.

// crashReceiver is one healthy endpoint that keeps, per event (its data.n), the distinct
// webhook-ids that delivered it.
type crashReceiver struct {
	srv      *fasthttp.Server
	ln       net.Listener
	URL      string
	rec      *recorder
	mu       sync.Mutex
	seen     map[string]struct{} // webhook-ids received
	perEvent []int32             // distinct webhook-ids per event n
	distinct atomic.Int64        // events received at least once
	requests atomic.Int64
	dups     atomic.Int64 // requests whose webhook-id was seen before
	dupEvent atomic.Int64 // events received under a second webhook-id (two deliveries of one event)
	lastNew  atomic.Int64 // unix ns of the latest first receipt of an event
	killAt   int64
	kill     chan struct{} // closed when distinct reaches killAt
}

func newCrashReceiver(events, killAt int, rec *recorder) (*crashReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &crashReceiver{ln: ln, URL: "http://" + ln.Addr().String() + "/crash", rec: rec, seen: map[string]struct{}{},
		perEvent: make([]int32, events+1), killAt: int64(killAt), kill: make(chan struct{})}
	r.srv = &fasthttp.Server{Handler: r.handle, NoDefaultServerHeader: true, NoDefaultDate: true}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *crashReceiver) handle(c *fasthttp.RequestCtx) {
	now := time.Now()
	body := c.PostBody()
	id := string(c.Request.Header.Peek("webhook-id"))
	n := numField(body, `"n":`)
	r.requests.Add(1)
	r.mu.Lock()
	if _, ok := r.seen[id]; ok {
		r.dups.Add(1)
	} else {
		r.seen[id] = struct{}{}
		if n > 0 && n < int64(len(r.perEvent)) {
			r.perEvent[n]++
			if r.perEvent[n] == 1 {
				r.lastNew.Store(now.UnixNano())
				if r.distinct.Add(1) == r.killAt {
					close(r.kill)
				}
			} else {
				r.dupEvent.Add(1)
			}
		}
	}
	r.mu.Unlock()
	r.rec.receipt(now, stamp(body))
	c.SetStatusCode(200)
}

// missing counts the events in owed (acked[n]) never received.
func (r *crashReceiver) missing(acked []bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	lost := 0
	for n, ok := range acked {
		if ok && n > 0 && r.perEvent[n] == 0 {
			lost++
		}
	}
	return lost
}

func (r *crashReceiver) close() {
	_ = r.ln.Close()
	done := make(chan struct{})
	go func() { _ = r.srv.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}

// hooklineProc runs the all-in-one binary with a fixed environment, so a restart finds the same
// data dir, database and ports.
type hooklineProc struct {
	bin     string
	env     []string
	api     string
	natsURL string
	log     *os.File
	cmd     *exec.Cmd
}

func newHooklineProc(b *bench, dataDir string) (*hooklineProc, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	// Hookline's defaults for everything else: drop whatever this shell sets.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKLINE_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "NATS_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOOKLINE_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(httpPort), "DATABASE_URL="+b.db.url(),
		"HOOKLINE_NATS_LISTEN=127.0.0.1:"+strconv.Itoa(natsPort), "HOOKLINE_NATS_MONITOR=127.0.0.1:0",
		"HOOKLINE_DATA_DIR="+dataDir, "HOOKLINE_ALLOW_PRIVATE_TARGETS=true", "HOOKLINE_ADMIN_API_KEY="+b.adminKey)
	return &hooklineProc{bin: b.hooklineBin(), env: env, log: b.logFile,
		api: "http://127.0.0.1:" + strconv.Itoa(httpPort), natsURL: "nats://127.0.0.1:" + strconv.Itoa(natsPort)}, nil
}

func (p *hooklineProc) start() error {
	p.cmd = exec.Command(p.bin)
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = p.env, p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start hookline: %w", err)
	}
	return nil
}

func (p *hooklineProc) kill() {
	_ = p.cmd.Process.Kill() // SIGKILL
	_ = p.cmd.Wait()
}

// stop asks for a graceful stop and kills after 20 s.
func (p *hooklineProc) stop() {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// crash runs one run of the crash scenario.
func (b *bench) crash(ctx context.Context, res runResult) (runResult, error) {
	total := b.crashEvents
	if err := b.db.recreate(ctx); err != nil { // empty: Hookline migrates it
		return res, err
	}
	dataDir, err := os.MkdirTemp(b.tmp, "crash-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dataDir)
	rec := newRecorder()
	rv, err := newCrashReceiver(total, max(1, total/4), rec)
	if err != nil {
		return res, err
	}
	defer rv.close()
	p, err := newHooklineProc(b, dataDir)
	if err != nil {
		return res, err
	}
	if err := p.start(); err != nil {
		return res, err
	}
	defer p.stop()
	if err := waitReady(ctx, p.api+"/readyz", 60*time.Second); err != nil {
		return res, err
	}
	var et struct {
		ID string `json:"id"`
	}
	if err := apiDo(ctx, http.MethodPost, p.api+"/event_type", b.adminKey, map[string]any{"name": benchType, "description": "benchmark events"}, &et); err != nil {
		return res, err
	}
	var wh struct {
		ID string `json:"id"`
	}
	if err := apiDo(ctx, http.MethodPost, p.api+"/webhook/register", b.adminKey,
		map[string]any{"event_type_id": et.ID, "user_id": 1, "url": rv.URL}, &wh); err != nil {
		return res, err
	}
	nc, err := nats.Connect(p.natsURL, nats.Name("hookline-bench-crash"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(2*time.Second))
	if err != nil {
		return res, err
	}

	deadline := b.crashDeadline
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	acked := make([]bool, total+1)
	var ackedN atomic.Int64
	pubDone := make(chan struct{})
	rec.reset()
	start := rec.start
	go func() {
		defer close(pubDone)
		publishAll(rctx, js, fmt.Sprintf("crash-%d-", res.Run), total, acked, &ackedN)
	}()
	defer func() { cancel(); <-pubDone }()

	select {
	case <-rv.kill:
	case <-time.After(deadline): // too slow to reach the quarter: kill it all the same
		res.Metrics["kill_at_deadline"] = 1
	case <-ctx.Done():
		return res, ctx.Err()
	}
	killed := time.Now()
	p.kill()
	res.Metrics["kill_after_s"] = killed.Sub(start).Seconds()
	res.Metrics["received_at_kill"] = float64(rv.distinct.Load())
	res.Metrics["requests_at_kill"] = float64(rv.requests.Load())
	res.Metrics["published_at_kill"] = float64(ackedN.Load())

	restarted := time.Now()
	if err := p.start(); err != nil {
		return res, err
	}
	if err := waitReady(ctx, p.api+"/readyz", deadline); err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Metrics["not_ready"] = 1 // count what arrives anyway
	} else {
		res.Metrics["ready_s"] = time.Since(restarted).Seconds()
	}
	// Every event delivered, or the deadline; then until Hookline's queues are empty (redeliveries
	// of what was in flight at the kill come as duplicates, possibly only after AckWait).
	end := restarted.Add(deadline)
	_ = waitFor(ctx, time.Until(end), func() bool { return rv.distinct.Load() >= int64(total) })
	cancel()
	<-pubDone
	lost := rv.missing(acked)
	res.Metrics["owed"] = float64(ackedN.Load())
	res.Metrics["lost"] = float64(lost)
	// recovery_s: restart to the last owed event received; the deadline itself when some never
	// came (a censored value: "not within the deadline").
	last := max(0, float64(rv.lastNew.Load()-restarted.UnixNano())/1e9)
	res.Metrics["last_new_s"] = last
	res.Metrics["recovery_s"] = last
	if lost > 0 {
		res.Metrics["recovery_s"] = deadline.Seconds()
	}
	for quiet, absent := 0, 0; quiet < 3 && absent < 8 && time.Now().Before(end) && ctx.Err() == nil; { // 3 polls in a row
		busy, ok := queued(p.api)
		switch {
		case !ok:
			absent++ // no gauges: settle 2 s and count what came
		case busy:
			quiet = 0
		default:
			quiet++
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.Metrics["queues_empty_s"] = time.Since(restarted).Seconds()
	time.Sleep(time.Second) // a request already on its way
	res.Metrics["duplicates"] = float64(rv.dups.Load())
	res.Metrics["duplicate_events"] = float64(rv.dupEvent.Load())
	res.Metrics["requests"] = float64(rv.requests.Load())
	res.Series = rec.series(time.Since(start) + time.Second)
	debugf("crash: hookline log in %s", b.logFile.Name())
	return res, nil
}

// publishAll publishes events 1..total to events.<benchType> for user 1, in chunks, until each
// has a JetStream ack (acked[n]) or ctx ends; an unacknowledged publish is retried with the
// same Nats-Msg-Id, which the stream deduplicates.
func publishAll(ctx context.Context, js jetstream.JetStream, prefix string, total int, acked []bool, ackedN *atomic.Int64) {
	const chunk = 1000
	pending := make([]int, 0, total)
	for n := 1; n <= total; n++ {
		pending = append(pending, n)
	}
	for len(pending) > 0 && ctx.Err() == nil {
		var retry []int
		for i := 0; i < len(pending); i += chunk {
			part := pending[i:min(i+chunk, len(pending))]
			futs := make([]jetstream.PubAckFuture, len(part))
			for k, n := range part {
				id := prefix + strconv.Itoa(n)
				m := &nats.Msg{Subject: "events." + benchType, Data: eventBody(make([]byte, 0, 160), id, 1, int64(n)),
					Header: nats.Header{nats.MsgIdHdr: []string{id}}}
				futs[k], _ = js.PublishMsgAsync(m)
			}
			for k, f := range futs {
				if f == nil {
					retry = append(retry, part[k])
					continue
				}
				select {
				case <-f.Ok():
					acked[part[k]] = true
					ackedN.Add(1)
				case <-f.Err():
					retry = append(retry, part[k])
				case <-ctx.Done():
					return
				}
			}
		}
		pending = retry
		if len(retry) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// queued is true while any of Hookline's consumer pending and ack-pending gauges or deliveries
// waiting for a busy endpoint (from /metrics) is not zero; ok is false when none is there.
func queued(api string) (busy, ok bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(api + "/metrics")
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"hookline_consumer_pending_messages", "hookline_consumer_ack_pending_messages", "hookline_deliveries_waiting"} {
			rest, found := strings.CutPrefix(line, name)
			if !found || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			f := strings.Fields(rest)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				busy, ok = busy || v != 0, true // -1 is "unknown": not empty either
			}
		}
	}
	return busy, ok
}
