// Command hookline-bench is Hookline's end-to-end benchmark (`make bench`): it runs the
// all-in-one in this process (or, with -processes, the three services as separate processes
// on a NATS server it hosts), loopback receivers and a load generator, runs the scenarios of
// issues 6 and 9 on a database of its own (hookline_bench_<pid>, dropped at the end), and
// writes bench/results/<date>.json and .md with SVG charts. The floor scenario (floor.go) is a
// minimal pass-through with Hookline's durability, the yardstick every other figure is also
// reported against; the crash scenario (crash.go) SIGKILLs the all-in-one binary mid-delivery
// and restarts it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookline/hookline/pkg/natsx"
)

type bench struct {
	duration, warmup time.Duration
	runs             int
	scenarios        []string
	rates, httpRates []int
	floorRates       []int
	drainEvents      int
	crashEvents      int
	crashDeadline    time.Duration
	processes        bool
	httpConcurrency  int
	window           int64
	out, repo, tmp   string
	name             string // report files' base name; "" = the date
	alternate        bool   // run k of every variant before run k+1 of any
	cpuprofile       string
	profileScenario  string
	profiled         bool
	db               benchDB
	adminKey         string
	logFile          *os.File
	binDir           string
}

var verbose bool

func debugf(format string, args ...any) {
	if verbose {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}
}

func main() {
	var (
		b                           bench
		scenarios, rates, httpRates string
		floorRates                  string
		serverURL                   string
	)
	flag.DurationVar(&b.duration, "duration", 20*time.Second, "length of each run")
	flag.DurationVar(&b.warmup, "warmup", 0, "start of each run left out of the figures (0 = min(5s, duration/5))")
	flag.IntVar(&b.runs, "runs", 3, "runs of each scenario variant")
	flag.StringVar(&scenarios, "scenarios", "floor,nats,nats-sync,http,upload,latency,latency-http,hol,ratelimit,drain,crash,cluster", "scenarios to run")
	flag.StringVar(&rates, "rates", "1000,5000,10000", "fixed rates (events/s) of the latency scenario (NATS publish)")
	flag.StringVar(&httpRates, "http-rates", "1000,5000", "fixed rates (events/s) of the latency-http scenario (POST /events)")
	flag.StringVar(&floorRates, "floor-rates", "1000,5000", "fixed rates (events/s) of the floor's latency variants")
	flag.IntVar(&b.drainEvents, "drain-events", 200_000, "backlog of the drain scenario")
	flag.IntVar(&b.crashEvents, "crash-events", 20_000, "events owed in the crash scenario")
	flag.DurationVar(&b.crashDeadline, "crash-deadline", 120*time.Second, "crash: how long after the restart an event may still arrive before it counts as lost")
	flag.BoolVar(&b.processes, "processes", false, "run ingress, processor and dispatcher as separate processes")
	flag.IntVar(&b.httpConcurrency, "http-concurrency", 64, "concurrent clients of the HTTP saturation scenario (uploads: half)")
	flag.Int64Var(&b.window, "window", 16384, "saturation: most events published but not yet received")
	flag.StringVar(&b.out, "out", "bench/results", "directory of the report")
	flag.BoolVar(&b.alternate, "alternate", false, "run the variants in turn (run 1 of each, then run 2 of each, ...), so a machine whose load changes weighs on all alike")
	flag.StringVar(&b.name, "name", "", "base name of the report files (default: the date, e.g. 2026-12-02)")
	flag.StringVar(&b.repo, "repo", ".", "repository root (to build the services for -processes)")
	flag.StringVar(&serverURL, "db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server (its postgres database)")
	flag.StringVar(&b.cpuprofile, "cpuprofile", "", "write a CPU profile of this process during run 1 of -profile-scenario")
	flag.StringVar(&b.profileScenario, "profile-scenario", "nats", "scenario profiled by -cpuprofile")
	flag.BoolVar(&verbose, "v", false, "log details to stderr")
	flag.Parse()
	b.scenarios = strings.Split(scenarios, ",")
	b.rates, b.httpRates, b.floorRates = ints(rates), ints(httpRates), ints(floorRates)
	if b.warmup == 0 {
		b.warmup = min(5*time.Second, b.duration/5)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.main(ctx, serverURL); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// hooklineBin is the all-in-one binary built for the crash scenario.
func (b *bench) hooklineBin() string { return filepath.Join(b.binDir, "hookline") }

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func (b *bench) sysOpts(dataDir string) sysOptions {
	return sysOptions{processes: b.processes, binDir: b.binDir, dataDir: dataDir, dbURL: b.db.url(),
		adminKey: b.adminKey, logFile: b.logFile}
}

func (b *bench) main(ctx context.Context, serverURL string) error {
	var err error
	if err := os.MkdirAll(filepath.Join(b.repo, "bench", "tmp"), 0o755); err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp(filepath.Join(b.repo, "bench", "tmp"), "run-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	if b.logFile, err = os.Create(filepath.Join(b.repo, "bench", "tmp", "services.log")); err != nil {
		return err
	}
	defer b.logFile.Close()
	b.db = benchDB{serverURL: serverURL, name: fmt.Sprintf("hookline_bench_%d", os.Getpid())}
	defer func() { _ = b.db.drop(context.WithoutCancel(ctx)) }()
	b.adminKey = randomKey()
	b.binDir = filepath.Join(b.tmp, "bin")
	var build []string
	if b.processes {
		build = append(build, "ingress", "processor", "dispatcher")
	}
	if slices.Contains(b.scenarios, "crash") {
		build = append(build, "hookline")
	}
	for _, s := range build {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(b.binDir, s), "./services/"+s)
		cmd.Dir, cmd.Stdout, cmd.Stderr = b.repo, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", s, err)
		}
	}
	meta := b.meta(ctx)
	printMeta(meta)
	specs := b.specs()
	var (
		results []runResult
		failed  []string
	)
	started := time.Now()
	type job struct {
		sp  spec
		run int
	}
	var jobs []job
	for _, sp := range specs {
		for run := 1; run <= b.runs; run++ {
			jobs = append(jobs, job{sp, run})
		}
	}
	if b.alternate {
		slices.SortStableFunc(jobs, func(x, y job) int { return x.run - y.run })
	}
	for _, j := range jobs {
		sp, run := j.sp, j.run
		{
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t0 := time.Now()
			r, err := b.runOnce(ctx, sp, run)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// One broken run must not cost the figures of the others: report it and go on.
				failed = append(failed, fmt.Sprintf("%s %s run %d: %v", sp.name, sp.variant, run, err))
				fmt.Printf("%-13s %-12s run %d  FAILED: %v\n", sp.name, sp.variant, run, err)
				continue
			}
			results = append(results, r)
			fmt.Printf("%-13s %-12s run %d  %s  (%.0fs)\n", sp.name, sp.variant, run, oneLine(r), time.Since(t0).Seconds())
		}
	}
	meta["elapsed_s"] = time.Since(started).Seconds()
	if len(failed) > 0 {
		meta["failed_runs"] = failed
	}
	sum := summarize(results)
	fmt.Println()
	for _, s := range sum {
		fmt.Printf("%-13s %-12s %-22s median %10.2f  (min %.2f, max %.2f)\n", s.Scenario, s.Variant, s.Metric, s.Median, s.Min, s.Max)
	}
	if err := b.write(meta, results, sum); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func oneLine(r runResult) string {
	var parts []string
	keys := make([]string, 0, len(r.Metrics))
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.1f", k, r.Metrics[k]))
	}
	if r.Latency != nil {
		parts = append(parts, fmt.Sprintf("e2e p50/p90/p99/max=%.2f/%.2f/%.2f/%.1fms", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max))
	}
	if r.Reply != nil {
		parts = append(parts, fmt.Sprintf("reply p50/p99=%.2f/%.2fms", r.Reply.P50, r.Reply.P99))
	}
	for k, v := range r.PeakRSS {
		parts = append(parts, fmt.Sprintf("rss[%s]=%.0fMiB", k, v))
	}
	return strings.Join(parts, " ")
}

// meta is the machine and every setting in use.
func (b *bench) meta(ctx context.Context) map[string]any {
	topo := natsx.DefaultTopology()
	cfg := benchConfig(b.sysOpts(""))
	mode := "all-in-one in process (embedded NATS, in-process connection)"
	if b.processes {
		mode = "ingress, processor, dispatcher as separate processes; NATS hosted by the bench process (TCP loopback)"
	}
	if slices.Equal(b.scenarios, []string{"cluster"}) {
		mode = "the cluster scenario's (below)"
	}
	m := map[string]any{
		"date":       time.Now().UTC().Format(time.RFC3339),
		"cores":      runtime.NumCPU(),
		"gomaxprocs": runtime.GOMAXPROCS(0),
		"go":         runtime.Version(),
		"os_arch":    runtime.GOOS + "/" + runtime.GOARCH,
		"mode":       mode,
		"flags": map[string]any{"duration": b.duration.String(), "warmup": b.warmup.String(), "runs": b.runs,
			"scenarios": b.scenarios, "rates": b.rates, "http_rates": b.httpRates, "floor_rates": b.floorRates,
			"drain_events": b.drainEvents, "crash_events": b.crashEvents, "crash_deadline": b.crashDeadline.String(),
			"processes": b.processes, "http_concurrency": b.httpConcurrency, "window": b.window, "alternate": b.alternate},
		"settings": map[string]any{
			"HOOKLINE_NATS_SYNC":             "default (JetStream periodic fsync; nats-sync scenario: always)",
			"HOOKLINE_ENDPOINT_CONCURRENCY":  cfg.EndpointConcurrency,
			"HOOKLINE_RECEIVER_TIMEOUT":      cfg.ReceiverTimeout.String(),
			"HOOKLINE_RETRY_SCHEDULE":        cfg.RetrySchedule.String(),
			"HOOKLINE_RETRY_AFTER_MAX":       cfg.RetryAfterMax.String(),
			"HOOKLINE_DISABLE_AFTER":         cfg.DisableAfter.String(),
			"HOOKLINE_RECONCILE_AFTER":       cfg.ReconcileAfter.String(),
			"HOOKLINE_STREAM_REPLICAS":       cfg.StreamReplicas,
			"HOOKLINE_BLOB_STORE":            cfg.BlobStore,
			"HOOKLINE_MAX_BODY_BYTES":        cfg.MaxBodyBytes,
			"HOOKLINE_ALLOW_PRIVATE_TARGETS": cfg.AllowPrivateTargets,
			"HOOKLINE_RATE_LIMIT":            cfg.RateLimit,
			"db_max_conns":                   "16 (all-in-one) / 8 (each service)",
			"dispatch_max_ack_pending":       topo.DispatchMaxAckPending,
			"process_max_ack_pending":        topo.ProcessMaxAckPending,
			"dispatch_ack_wait":              (cfg.ReceiverTimeout + 30*time.Second).String(),
			"processor_batch":                256,
			"dispatcher_outcome_batch":       512,
			"signatures":                     "on (Standard Webhooks HMAC-SHA256), every attempt recorded",
		},
		"receiver": "fasthttp server on 127.0.0.1, answers 200 at once (hol: 10 of 100 endpoints hang until the client gives up)",
		"floor": fmt.Sprintf("JetStream file stream on an embedded server (default sync, in-process connection) → pull consumer → "+
			"one pgx COPY per batch of what is queued (≤ %d rows, %d at once, synchronous_commit=on) → fasthttp POST of the body "+
			"(%d keep-alive connections) → one AckAll per batch after every 2xx; no signing, no attempt log", floorBatchMax, floorCopiers, floorPosters),
		"crash": fmt.Sprintf("all-in-one binary as a child process (embedded NATS, data dir in a temp dir), one webhook to one healthy receiver; "+
			"%d events on NATS events.%s (unacked publishes retried with the same Nats-Msg-Id); SIGKILL at a quarter received, "+
			"restart at once on the same data dir and database; lost = owed events not received %s after the restart", b.crashEvents, benchType, b.crashDeadline),
		"cluster": "cluster scenario: ingress, processor and dispatcher apart in this process (TCP loopback to NATS); " +
			"R1 = one embedded NATS server, streams at 1 replica; R3 = three nats-servers in this process clustered over loopback routes, " +
			"streams, consumers and buckets at 3 replicas, NATS_URL listing all three; default sync on both",
		"generator": "NATS: nats.go JetStream PublishAsync with Nats-Msg-Id; HTTP: fasthttp client; in this process",
	}
	if c, err := pgx.Connect(ctx, b.db.serverURL); err == nil {
		var v, sc, fs string
		_ = c.QueryRow(ctx, "SELECT version(), current_setting('synchronous_commit'), current_setting('fsync')").Scan(&v, &sc, &fs)
		m["postgres"] = map[string]string{"version": v, "synchronous_commit": sc, "fsync": fs}
		c.Close(ctx)
	}
	return m
}

func printMeta(m map[string]any) {
	raw, _ := json.MarshalIndent(m, "", "  ")
	fmt.Printf("hookline-bench: %d cores\n%s\n\n", m["cores"], raw)
}
