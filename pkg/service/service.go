// Package service wires Hookline's components into a process: the three services run alone
// against an external NATS (NATS_URL), or together in the all-in-one with an embedded
// nats-server. Each service's main is a call to Main; tests call Run.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookline/hookline/pkg/blob"
	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/dispatcher"
	"github.com/hookline/hookline/pkg/egress"
	"github.com/hookline/hookline/pkg/httpapi"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/embedded"
	"github.com/hookline/hookline/pkg/processor"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// Role says which components a process runs.
type Role int

const (
	Ingress Role = 1 << iota
	Processor
	Dispatcher
	// AllInOne runs all three with an embedded NATS server when NATS_URL is empty, and
	// applies migrations (creating the database if missing) before it starts.
	AllInOne = Ingress | Processor | Dispatcher
)

func (r Role) String() string {
	switch r {
	case Ingress:
		return "ingress"
	case Processor:
		return "processor"
	case Dispatcher:
		return "dispatcher"
	case AllInOne:
		return "hookline"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// DefaultAddr is each role's HOOKLINE_HTTP_ADDR default.
func (r Role) DefaultAddr() string {
	switch r {
	case Processor:
		return ":8082"
	case Dispatcher:
		return ":8083"
	}
	return ":8081"
}

// Tuning holds knobs that are not settings: tests shorten the loops, benchmarks size the pools.
type Tuning struct {
	MaxDBConns            int           // 0 = 16 (all-in-one) or 8
	ScanInterval          time.Duration // dispatcher's due-retry scan; 0 = 250ms
	HandBackDelay         time.Duration
	DispatchMaxAckPending int
	PruneEvery            time.Duration // retention pass; 0 = 1h
	LeaseTTL              time.Duration // singleton jobs' lease of a separate processor or dispatcher; 0 = natsx.DefaultLeaseTTL
	TailHeartbeat         time.Duration // GET /attempts/stream's keepalive comment; 0 = 15s
	// Ready, when set, is called once every component is started, with the API's (or
	// metrics') address and the NATS URL in use.
	Ready func(httpAddr, natsURL string)
}

// Run starts the role's components and blocks until ctx ends, then stops them in order and
// returns nil, or returns the first component's error.
func Run(ctx context.Context, log *slog.Logger, cfg config.Config, role Role, tune Tuning) error {
	access, errorLog, err := openLogs(cfg.LogDir) // both nil when HOOKLINE_LOG_DIR is unset
	if err != nil {
		return err
	}
	defer closeLogs(access, errorLog)
	log = slog.New(logHandler(log.Handler(), errorLog)).With("service", role.String())
	if role == AllInOne {
		if err := bootstrapSecrets(&cfg, log); err != nil {
			return err
		}
		if err := store.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	var sealer *webhook.Sealer
	if cfg.EncryptionKey != nil {
		if sealer, err = webhook.NewSealer(cfg.EncryptionKey); err != nil {
			return fmt.Errorf("HOOKLINE_ENCRYPTION_KEY: %w", err)
		}
	} else if role&(Ingress|Dispatcher) != 0 {
		log.Warn("HOOKLINE_ENCRYPTION_KEY unset: webhook signing secrets are stored in clear")
	}
	maxConns := tune.MaxDBConns
	if maxConns == 0 {
		maxConns = 8
		if role == AllInOne {
			maxConns = 16
		}
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, maxConns)
	if err != nil {
		return err
	}
	defer db.Close()
	if role == AllInOne {
		applied, err := db.MigrateUp(ctx)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			log.Info("migrations applied", "names", applied)
		}
	}

	natsURL := cfg.NATSURL
	var srv *server.Server
	if natsURL == "" {
		if role != AllInOne {
			return errors.New("NATS_URL: required (only the all-in-one embeds a NATS server)")
		}
		srv, err = embedded.Start(embedded.Options{Listen: cfg.NATSListen, Monitor: cfg.NATSMonitor,
			StoreDir: filepath.Join(cfg.DataDir, "nats"), User: cfg.NATSUser, Password: cfg.NATSPassword,
			SyncAlways: cfg.NATSSyncAlways})
		if err != nil {
			return err
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		natsURL = srv.ClientURL()
		log.Info("embedded nats started", "url", natsURL, "monitor", monitorURL(srv), "sync_always", cfg.NATSSyncAlways)
	}
	var inProcess nats.InProcessConnProvider
	if srv != nil {
		inProcess = srv // no loopback TCP between the services and their own server
	}
	nc, err := natsx.Connect(withCredentials(natsURL, cfg), inProcess, "hookline-"+role.String(), log)
	if err != nil {
		return err
	}
	defer func() {
		// Acks and naks sent while stopping must reach the server before the connection
		// goes, or their messages wait a whole AckWait to be redelivered.
		_ = nc.FlushTimeout(2 * time.Second)
		nc.Close()
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	topo := natsx.DefaultTopology()
	topo.Replicas = cfg.StreamReplicas
	topo.EventMaxAge = max(cfg.EventRetention, time.Second) // JetStream's floor is 100 ms
	if tune.DispatchMaxAckPending > 0 {
		topo.DispatchMaxAckPending = tune.DispatchMaxAckPending
	}
	if err := atStart(ctx, log, "streams and consumers", func(ctx context.Context) error { return natsx.Setup(ctx, js, topo) }); err != nil {
		return err
	}

	m := metrics.New()
	g, gctx := errgroup.WithContext(ctx)
	// The consumers mark themselves here while they are not consuming; /readyz fails then.
	consuming := &natsx.Consuming{}
	gctx = natsx.WithConsuming(gctx, consuming)
	var ln net.Listener
	if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("HOOKLINE_HTTP_ADDR=%q: %w", cfg.HTTPAddr, err)
	}
	if role&Ingress != 0 {
		blobs, err := openBlobs(ctx, cfg, js)
		if err != nil {
			ln.Close()
			return err
		}
		public := cfg.PublicURL
		if public == "" {
			public = "http://127.0.0.1:" + config.Port(ln.Addr().String())
		}
		linkKey := cfg.EncryptionKey
		if linkKey == nil {
			linkKey = []byte(cfg.AdminAPIKey) // shared by every replica that shares the admin key
		}
		if len(linkKey) == 0 {
			linkKey = make([]byte, 32)
			_, _ = rand.Read(linkKey)
			log.Warn("no HOOKLINE_ENCRYPTION_KEY nor HOOKLINE_ADMIN_API_KEY: download links hold on this replica only")
		}
		if cfg.AdminAPIKey == "" {
			log.Warn("HOOKLINE_ADMIN_API_KEY unset: only keys made with `hookline apikey create` work")
		}
		var quota jetstream.KeyValue // rate limits shared by the ingress replicas
		if cfg.RateLimit > 0 {
			if err = atStart(ctx, log, "rate-limit bucket", func(ctx context.Context) (err error) {
				quota, err = natsx.SetupQuotas(ctx, js, topo.Replicas)
				return err
			}); err != nil {
				ln.Close()
				return err
			}
		}
		api := httpapi.New(db, js, blobs, m, log, httpapi.Options{Quota: quota, MaxUploadBytes: cfg.MaxUploadBytes,
			MaxBodyBytes: cfg.MaxBodyBytes, AdminKey: cfg.AdminAPIKey, AccessLog: access, RateLimit: cfg.RateLimit, Sealer: sealer,
			Links: httpapi.NewLinks(linkKey, public, 0), EndpointConcurrency: cfg.EndpointConcurrency, ReceiverTimeout: cfg.ReceiverTimeout,
			Consuming: consuming, TailHeartbeat: tune.TailHeartbeat,
			AllowPrivateTargets: cfg.AllowPrivateTargets})
		g.Go(func() error { return api.Serve(gctx, ln) })
	} else {
		g.Go(func() error {
			return metrics.ServeListener(gctx, ln, m, func(ctx context.Context) error {
				if err := db.PingContext(ctx); err != nil {
					return fmt.Errorf("database unreachable: %w", err)
				}
				if err := natsx.Ready(ctx, js); err != nil {
					return fmt.Errorf("nats: %w", err)
				}
				return consuming.Err()
			})
		})
	}
	dispatchLease, pruneLease, err := leases(ctx, js, role, topo.Replicas, tune.LeaseTTL, ln.Addr().String(), m, log)
	if err != nil {
		ln.Close()
		return err
	}
	if role&Processor != 0 {
		p := processor.New(db, js, m, log, processor.Options{FirstWait: cfg.RetrySchedule[0],
			EventRetention: cfg.EventRetention, AttemptRetention: cfg.AttemptRetention, PruneEvery: tune.PruneEvery,
			RejectedRetention: cfg.RejectedRetention, RejectedPerUser: cfg.RejectedPerUser,
			Reopen: natsx.Reopener(js, topo, natsx.EventsStream, natsx.ProcessorConsumer), Lease: pruneLease})
		g.Go(func() error { return p.Run(gctx) })
	}
	if role&Dispatcher != 0 {
		client := egress.New(egress.Options{Timeout: cfg.ReceiverTimeout, AllowPrivate: cfg.AllowPrivateTargets})
		defer client.CloseIdleConnections()
		d := dispatcher.New(db, js, client, m, log, dispatcher.Options{
			Schedule: cfg.RetrySchedule, EndpointConcurrency: cfg.EndpointConcurrency,
			RetryAfterMax: cfg.RetryAfterMax, DisableAfter: cfg.DisableAfter, ReconcileAfter: cfg.ReconcileAfter,
			ScanInterval: tune.ScanInterval, HandBackDelay: tune.HandBackDelay, Sealer: sealer,
			Reopen: natsx.Reopener(js, topo, natsx.DeliveriesStream, natsx.DispatchConsumer), Lease: dispatchLease,
		})
		g.Go(func() error { return d.Run(gctx) })
	}
	if cfg.AllowPrivateTargets {
		log.Warn("HOOKLINE_ALLOW_PRIVATE_TARGETS=true: webhooks may target loopback and private addresses")
	}
	log.Info("started", "http_addr", ln.Addr().String(), "nats_url", redactURL(natsURL))
	if tune.Ready != nil {
		tune.Ready(ln.Addr().String(), natsURL)
	}
	err = g.Wait()
	log.Info("stopped")
	return err
}

// leases makes the leases a separate processor or dispatcher contends for, so that with N
// replicas one runs the retry scheduler and reconciler and one prunes (see docs/scaling.md).
// The all-in-one gets none: its embedded server serves that one process alone. A holder is
// named by host and HTTP address, stable across a restart of the same replica, so a replica
// killed and restarted takes its own lease back at once instead of waiting out the TTL.
func leases(ctx context.Context, js jetstream.JetStream, role Role, replicas int, ttl time.Duration, addr string, m *metrics.Set, log *slog.Logger) (dispatch, prune *natsx.Lease, err error) {
	if role == AllInOne || role&(Processor|Dispatcher) == 0 {
		return nil, nil, nil
	}
	if ttl <= 0 {
		ttl = natsx.DefaultLeaseTTL
	}
	var kv jetstream.KeyValue
	if err := atStart(ctx, log, "leases bucket", func(ctx context.Context) (err error) {
		kv, err = natsx.SetupLeases(ctx, js, ttl, replicas)
		return err
	}); err != nil {
		return nil, nil, err
	}
	// The bucket ages entries out after the TTL it was made with: a replica configured (or
	// released) with another TTL renews at the bucket's pace, or two holders would alternate.
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 && st.TTL() != ttl {
		log.Warn("the leases bucket keeps its own TTL", "bucket_ttl", st.TTL(), "configured", ttl)
		ttl = st.TTL()
	}
	host, _ := os.Hostname()
	lease := func(name string) *natsx.Lease {
		l := natsx.NewLease(kv, name, host+"/"+addr, ttl, log)
		l.Held = func(held bool) {
			v := 0.0
			if held {
				v = 1
			}
			m.LeaseHeld.WithLabelValues(name).Set(v)
		}
		return l
	}
	if role&Dispatcher != 0 {
		dispatch = lease(natsx.DispatcherLease)
	}
	if role&Processor != 0 {
		prune = lease(natsx.PruneLease)
	}
	return dispatch, prune, nil
}

func openBlobs(ctx context.Context, cfg config.Config, js jetstream.JetStream) (blob.Store, error) {
	if cfg.BlobStore == "dir" {
		return blob.NewDir(filepath.Join(cfg.DataDir, "files"))
	}
	return blob.NewNATS(ctx, js, natsx.FilesBucket)
}

func withCredentials(url string, cfg config.Config) string {
	if cfg.NATSURL != "" || cfg.NATSUser == "" {
		return url
	}
	// The embedded server was started with these credentials.
	return fmt.Sprintf("nats://%s:%s@%s", cfg.NATSUser, cfg.NATSPassword, url[len("nats://"):])
}

func monitorURL(s *server.Server) string {
	if a := s.MonitorAddr(); a != nil {
		return "http://" + a.String()
	}
	return ""
}

// redactURL hides the credentials of every URL of a NATS_URL list (comma-separated, one per
// cluster node, each may carry user:password@).
func redactURL(u string) string {
	urls := strings.Split(u, ",")
	for i, one := range urls {
		if at := strings.LastIndexByte(one, '@'); at >= 0 {
			scheme, _, ok := strings.Cut(one, "://")
			if !ok {
				scheme = "nats"
			}
			urls[i] = scheme + "://***@" + one[at+1:]
		}
	}
	return strings.Join(urls, ",")
}

// Exit codes of Main.
var osExit = os.Exit

// startPatience bounds how long a service retries its JetStream set-up at start: a cluster
// that has just started, or lost a node, may answer "no suitable peers for placement" or time
// out for a few seconds, which is no reason to exit. A set-up still failing after this is
// reported and the process exits, for its supervisor to see.
const startPatience = time.Minute

// atStart runs setup until it succeeds, ctx ends or startPatience has passed, waiting as
// natsx.Backoff says between tries (1 s doubling) and warning at most once per 10 s.
func atStart(ctx context.Context, log *slog.Logger, what string, setup func(context.Context) error) error {
	var b natsx.Backoff
	deadline := time.Now().Add(startPatience)
	for {
		err := setup(ctx)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		wait, logNow, unlogged := b.Fail(time.Now())
		if logNow {
			log.Warn("setting up "+what+" failed: trying again", "err", err, "in", wait, "failed_unlogged", unlogged)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
