package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natsx"
)

// runResult is one run of one scenario variant.
type runResult struct {
	Scenario string             `json:"scenario"`
	Variant  string             `json:"variant,omitempty"`
	Run      int                `json:"run"`
	Metrics  map[string]float64 `json:"metrics"`
	Latency  *pcts              `json:"publish_to_receipt,omitempty"`
	Reply    *pcts              `json:"ingress_reply,omitempty"`
	PeakRSS  map[string]float64 `json:"peak_rss_mib,omitempty"`
	Series   []point            `json:"series,omitempty"`
}

// spec is a scenario variant.
type spec struct {
	name, variant string
	endpoints     int
	hung          int
	syncAlways    bool
	nodes         int                                         // cluster: NATS nodes (streams at R<nodes>), services apart
	load          func(ctx context.Context, b *bench, e *env) // runs until ctx ends
}

// env is what a running scenario has at hand.
type env struct {
	sys      *system
	rv       *receiver
	rec      *recorder
	webhooks []string
	prefix   string
	nats     *natsGen
	http     *httpGen
	start    time.Time
	extra    map[string]float64
}

func (b *bench) specs() []spec {
	var out []spec
	for _, name := range b.scenarios {
		switch name {
		case "nats", "nats-sync":
			out = append(out, spec{name: name, endpoints: 1, syncAlways: name == "nats-sync", load: saturate})
		case "http":
			out = append(out, spec{name: name, endpoints: 1, load: func(ctx context.Context, b *bench, e *env) {
				workers(ctx, b.httpConcurrency, e.http.postEvent)
			}})
		case "upload":
			out = append(out, spec{name: name, endpoints: 1, load: func(ctx context.Context, b *bench, e *env) {
				workers(ctx, b.httpConcurrency/2, e.http.upload)
			}})
		case "latency":
			for _, r := range b.rates {
				out = append(out, spec{name: name, variant: strconv.Itoa(r) + "/s", endpoints: 1, load: atRate(r)})
			}
		case "latency-http":
			for _, r := range b.httpRates {
				out = append(out, spec{name: name, variant: strconv.Itoa(r) + "/s", endpoints: 1, load: func(ctx context.Context, b *bench, e *env) {
					e.extra["generator_dropped"] = float64(openLoopHTTP(ctx, r, 512, e.http.postEvent))
				}})
			}
		case "hol":
			for _, hung := range []int{0, 10} {
				v := "all-healthy"
				if hung > 0 {
					v = "10-hung"
				}
				out = append(out, spec{name: name, variant: v, endpoints: 100, hung: hung, load: func(ctx context.Context, b *bench, e *env) {
					// Pace on the 90 endpoints that are healthy in both variants.
					healthy := func() int64 {
						var n int64
						for i := 10; i < 100; i++ {
							n += e.rv.perEndpoint[i].Load()
						}
						return n
					}
					var atWarm atomic.Int64
					go func() {
						select {
						case <-time.After(b.warmup):
							atWarm.Store(healthy())
						case <-ctx.Done():
						}
					}()
					closedLoop(ctx, e.nats.publish, func(ep int) bool { return ep >= 10 }, healthy, b.window)
					e.extra["healthy90_per_s"] = float64(healthy()-atWarm.Load()) / (b.duration - b.warmup).Seconds()
				}})
			}
		case "ratelimit":
			// Issue 12 item 5: one endpoint limited to 50 deliveries/s (offered 100/s) beside an
			// unlimited one at saturation; each gets its own rate.
			out = append(out, spec{name: name, endpoints: 2, load: rateLimited})
		case "fifo":
			// Issue 12 item 6: the cost of strict order, one endpoint with "ordering": "fifo"
			// at fixed rates (compare with latency, the same without).
			for _, r := range []int{100, 500} {
				out = append(out, spec{name: name, variant: strconv.Itoa(r) + "/s", endpoints: 1, load: func(ctx context.Context, b *bench, e *env) {
					if err := apiDo(ctx, http.MethodPatch, e.sys.APIURL+"/webhook/"+e.webhooks[0], b.adminKey,
						map[string]any{"ordering": "fifo"}, &struct{}{}); err != nil {
						fmt.Fprintln(os.Stderr, "bench: fifo: set ordering:", err)
						return
					}
					atRate(r)(ctx, b, e)
				}})
			}
		case "drain":
			out = append(out, spec{name: name, endpoints: 1})
		case "floor":
			// The yardstick: saturation as nats, then the latency scenario's rates.
			out = append(out, spec{name: name, endpoints: 1, load: saturate})
			for _, r := range b.floorRates {
				out = append(out, spec{name: name, variant: strconv.Itoa(r) + "/s", endpoints: 1, load: atRate(r)})
			}
		case "crash":
			out = append(out, spec{name: name, endpoints: 1})
		case "cluster":
			// Issue 11 item 5: the cost of replication on this machine. The same services apart
			// (in this process) on one NATS node with R1 streams, then on three loopback nodes
			// with R3; saturation and 1,000/s each.
			// 200/s: a rate a loaded machine still keeps up with, for the CPU per delivery.
			for _, nodes := range []int{1, 3} {
				r := fmt.Sprintf("R%d ", nodes)
				out = append(out, spec{name: name, variant: r + "saturation", endpoints: 1, nodes: nodes, load: saturate},
					spec{name: name, variant: r + "1000/s", endpoints: 1, nodes: nodes, load: atRate(1000)},
					spec{name: name, variant: r + "200/s", endpoints: 1, nodes: nodes, load: atRate(200)})
			}
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (want nats, nats-sync, http, upload, latency, latency-http, hol, ratelimit, fifo, drain, floor, crash, cluster)\n", name)
			os.Exit(2)
		}
	}
	return out
}

// saturate publishes to NATS as fast as events are delivered (window rules of closedLoop).
func saturate(ctx context.Context, b *bench, e *env) {
	sent := closedLoop(ctx, e.nats.publish, func(int) bool { return true }, e.rec.count.Load, b.window)
	e.extra["published"] = float64(sent)
}

// limitedRate is the rate_limit of the ratelimit scenario's first endpoint, offered twice that.
const limitedRate = 50

// rateLimited sets webhook 0's rate_limit through the API, offers it twice its limit and
// saturates webhook 1, and reports each endpoint's delivered rate over the measured window.
func rateLimited(ctx context.Context, b *bench, e *env) {
	if err := apiDo(ctx, http.MethodPatch, e.sys.APIURL+"/webhook/"+e.webhooks[0], b.adminKey,
		map[string]any{"rate_limit": limitedRate}, &struct{}{}); err != nil {
		fmt.Fprintln(os.Stderr, "bench: ratelimit: set rate_limit:", err)
		return
	}
	var at [2]atomic.Int64
	go func() {
		select {
		case <-time.After(b.warmup):
			at[0].Store(e.rv.perEndpoint[0].Load())
			at[1].Store(e.rv.perEndpoint[1].Load())
		case <-ctx.Done():
		}
	}()
	go fixedRate(ctx, 2*limitedRate, func() { _ = e.nats.publishTo(0) })
	// A small window: the unlimited endpoint runs at full speed without a backlog that would
	// hold the limited endpoint's events back in the streams (FIFO) and hide its rate.
	closedLoop(ctx, func() (int, error) { return 1, e.nats.publishTo(1) }, func(int) bool { return true },
		e.rv.perEndpoint[1].Load, min(b.window, 1024))
	window := (b.duration - b.warmup).Seconds()
	e.extra["limited_per_s"] = float64(e.rv.perEndpoint[0].Load()-at[0].Load()) / window
	e.extra["unlimited_per_s"] = float64(e.rv.perEndpoint[1].Load()-at[1].Load()) / window
}

// atRate publishes to NATS at a fixed rate (events/s).
func atRate(rate int) func(ctx context.Context, b *bench, e *env) {
	return func(ctx context.Context, b *bench, e *env) {
		e.extra["published"] = float64(fixedRate(ctx, rate, func() { _, _ = e.nats.publish() }))
	}
}

// runOnce starts a fresh system (new database, new NATS store), runs sp's load for the run
// length and measures the window after the warm-up.
func (b *bench) runOnce(ctx context.Context, sp spec, run int) (runResult, error) {
	res := runResult{Scenario: sp.name, Variant: sp.variant, Run: run, Metrics: map[string]float64{}}
	if sp.name == "crash" {
		return b.crash(ctx, res)
	}
	if err := b.db.reset(ctx); err != nil {
		return res, err
	}
	dataDir, err := os.MkdirTemp(b.tmp, "run-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dataDir)
	rec := newRecorder()
	rv, err := newReceiver(sp.endpoints, sp.hung, rec)
	if err != nil {
		return res, err
	}
	defer rv.close()
	o := b.sysOpts(dataDir)
	var (
		sys     *system
		ids     []string
		natsURL string
		subject = "events." + benchType
	)
	if sp.name == "floor" {
		fl, err := startFloor(ctx, dataDir, o.dbURL, rv.endpointURL(0))
		if err != nil {
			return res, fmt.Errorf("floor: %w", err)
		}
		defer fl.close()
		natsURL, subject = fl.NATSURL, floorSubject
	} else {
		o.syncAlways = sp.syncAlways
		o.noDispatcher = sp.name == "drain"
		o.nodes = sp.nodes
		if sys, err = startSystem(ctx, o); err != nil {
			return res, err
		}
		defer sys.stop()
		urls := make([]string, sp.endpoints)
		for i := range urls {
			urls[i] = rv.endpointURL(i)
		}
		if ids, err = registerEndpoints(ctx, sys.APIURL, o.adminKey, urls); err != nil {
			return res, err
		}
		natsURL = sys.NATSURL
	}
	prefix := strings.NewReplacer("/", "", " ", "").Replace(fmt.Sprintf("%s-%s-%d-", sp.name, sp.variant, run))
	ng, err := newNATSGen(natsURL, subject, prefix, sp.endpoints)
	if err != nil {
		return res, err
	}
	defer ng.close()
	if sp.name == "drain" {
		return b.drain(ctx, res, sys, rec, ng)
	}
	// Let the target cache and connections warm with one delivery before measuring.
	if _, err := ng.publish(); err != nil {
		return res, err
	}
	if err := waitFor(ctx, 30*time.Second, func() bool { return rec.count.Load() >= 1 || sp.hung > 0 }); err != nil {
		return res, fmt.Errorf("first delivery: %w", err)
	}
	rec.reset()
	e := &env{sys: sys, rv: rv, rec: rec, webhooks: ids, prefix: prefix, nats: ng, extra: map[string]float64{}, start: rec.start}
	if sys != nil {
		e.http = newHTTPGen(sys.APIURL, o.adminKey, prefix+"h", ids, rec.start)
	}
	if b.cpuprofile != "" && run == 1 && sp.name == b.profileScenario && !b.profiled {
		f, err := os.Create(b.cpuprofile)
		if err == nil {
			b.profiled = true
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	cpu0 := processCPU()
	lctx, cancel := context.WithTimeout(ctx, b.duration)
	sp.load(lctx, b, e)
	cancel()
	if n := rec.count.Load(); n > 0 {
		// CPU of this process (services, NATS, generator, receivers; not PostgreSQL) per
		// delivery: far less sensitive than rates to other load on a shared machine.
		res.Metrics["cpu_us_per_delivery"] = float64((processCPU() - cpu0).Microseconds()) / float64(n)
	}
	if l, ok := loadAvg(); ok {
		res.Metrics["machine_load1"] = l // the 1-minute load average as the load stopped: the machine is shared
	}
	measured := (b.duration - b.warmup).Seconds()
	n, lats := rec.window(b.warmup, b.duration)
	res.Metrics["deliveries_per_s"] = float64(n) / measured
	res.Metrics["publish_errors"] = float64(ng.errors.Load())
	if len(lats) > 0 {
		p := percentiles(lats)
		res.Latency = &p
	}
	if e.http != nil {
		if hn, replies := e.http.replies.window(b.warmup, b.duration); hn > 0 {
			res.Metrics["accepted_per_s"] = float64(hn) / measured
			p := percentiles(replies)
			res.Reply = &p
		}
		if f := e.http.fail.Load(); f > 0 {
			res.Metrics["http_failures"] = float64(f)
		}
	}
	for k, v := range e.extra {
		res.Metrics[k] = v
	}
	res.Series = rec.series(b.duration)
	return res, nil
}

// drain publishes the backlog with no dispatcher running, waits until the processor has turned
// every event into a DELIVERIES message, then starts the dispatcher and times the drain.
func (b *bench) drain(ctx context.Context, res runResult, sys *system, rec *recorder, ng *natsGen) (runResult, error) {
	n := int64(b.drainEvents)
	t0 := time.Now()
	for i := int64(0); i < n; i++ {
		if _, err := ng.publish(); err != nil {
			i--
			time.Sleep(time.Millisecond)
		}
	}
	ng.flush(time.Minute)
	res.Metrics["publish_s"] = time.Since(t0).Seconds()
	js, _ := jetstream.New(ng.nc)
	err := waitFor(ctx, 15*time.Minute, func() bool {
		st, err := js.Stream(ctx, natsx.DeliveriesStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && int64(info.State.Msgs) >= n
	})
	if err != nil {
		return res, fmt.Errorf("processor did not queue %d deliveries: %w", n, err)
	}
	res.Metrics["process_s"] = time.Since(t0).Seconds()
	sys.resetPeakRSS()
	rec.reset()
	start := time.Now()
	if err := sys.StartDispatcher(ctx); err != nil {
		return res, err
	}
	if err := waitFor(ctx, 15*time.Minute, func() bool { return rec.count.Load() >= n }); err != nil {
		return res, fmt.Errorf("drain: %d of %d delivered: %w", rec.count.Load(), n, err)
	}
	d := time.Since(start)
	res.Metrics["drain_s"] = d.Seconds()
	res.Metrics["drain_per_s"] = float64(n) / d.Seconds()
	res.PeakRSS = sys.peakRSS()
	for _, v := range res.PeakRSS {
		res.Metrics["max_peak_rss_mib"] = max(res.Metrics["max_peak_rss_mib"], v)
	}
	res.Series = rec.series(d + time.Second)
	return res, nil
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.start = time.Now()
	r.at, r.lat = r.at[:0], r.lat[:0]
	r.count.Store(0)
	r.mu.Unlock()
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// loadAvg is the machine's 1-minute load average (Linux).
func loadAvg() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// processCPU is the user and system CPU time this process has used (Linux getrusage).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
