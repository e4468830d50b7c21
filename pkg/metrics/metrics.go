// Package metrics owns Hookline's Prometheus series (names and buckets of DESIGN §10) and the
// small HTTP server that serves /metrics, /healthz and /readyz on processes without an API.
// Each process builds one Set on its own registry and hands it to every component, so the
// all-in-one's /metrics carries the series of all three services.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Set is every Hookline series of one process.
type Set struct {
	Registry *prometheus.Registry

	HTTPRequests      *prometheus.CounterVec   // route, method, status
	HTTPDuration      *prometheus.HistogramVec // route, method
	EventsPublished   *prometheus.CounterVec   // type
	EventsProcessed   *prometheus.CounterVec   // type
	EventsRejected    *prometheus.CounterVec   // reason
	EventsFiltered    *prometheus.CounterVec   // type: deliveries a webhook's filter held back
	Deliveries        *prometheus.CounterVec   // outcome: succeeded, failed, retried
	AttemptDuration   prometheus.Histogram
	EndToEnd          prometheus.Histogram
	RetriesScheduled  prometheus.Counter
	Waiting           prometheus.Gauge
	EndpointsDisabled *prometheus.CounterVec // reason
	AcksFailed        *prometheus.CounterVec // consumer: acks of recorded work that could not be sent
	LeaseHeld         *prometheus.GaugeVec   // lease: 1 on the replica that runs its jobs
	TaskRuns          *prometheus.CounterVec // task: passes of scheduler, reconciler, prune
}

// latencyBuckets start at 0.5 ms and double up to about 16 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// New registers every series on a fresh registry, with the Go and process collectors.
func New() *Set {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	s := &Set{Registry: reg}
	s.HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_http_requests_total",
		Help: "HTTP requests answered by the ingress, by route, method and status."}, []string{"route", "method", "status"})
	s.HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hookline_http_request_duration_seconds",
		Help: "Time to answer an HTTP request.", Buckets: latencyBuckets}, []string{"route", "method"})
	s.EventsPublished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_events_published_total",
		Help: "Events the ingress published to JetStream (acknowledged), by type."}, []string{"type"})
	s.EventsProcessed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_events_processed_total",
		Help: "Events the processor accepted and fanned out, by type."}, []string{"type"})
	s.EventsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_events_rejected_total",
		Help: "Events refused and kept in rejected_events, by reason."}, []string{"reason"})
	s.EventsFiltered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_events_filtered_total",
		Help: "Events a subscribed webhook did not receive because its payload filter did not match, by type (one per event and webhook)."}, []string{"type"})
	s.Deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_deliveries_total",
		Help: "Delivery attempts by outcome: succeeded, retried (failed, another attempt scheduled) or failed (no attempts left)."}, []string{"outcome"})
	s.AttemptDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hookline_delivery_attempt_duration_seconds",
		Help: "Duration of one HTTP attempt to a receiver.", Buckets: latencyBuckets})
	s.EndToEnd = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hookline_delivery_end_to_end_seconds",
		Help: "From the event's time to the receiver's 2xx.", Buckets: prometheus.ExponentialBucketsRange(0.0005, 86400, 28)})
	s.RetriesScheduled = prometheus.NewCounter(prometheus.CounterOpts{Name: "hookline_delivery_retries_scheduled_total",
		Help: "Retries written to PostgreSQL to run later (failed attempts and saturated endpoints)."})
	s.Waiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hookline_deliveries_waiting",
		Help: "Deliveries held in memory waiting for a slot of their endpoint."})
	s.EndpointsDisabled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_endpoints_disabled_total",
		Help: "Webhooks disabled automatically, by reason: gone (410) or failing (every attempt failed for HOOKLINE_DISABLE_AFTER)."}, []string{"reason"})
	s.AcksFailed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_acks_failed_total",
		Help: "Acks of recorded work that could not be sent (the message is redelivered and found recorded), by consumer."}, []string{"consumer"})
	s.LeaseHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hookline_lease_held",
		Help: "1 while this replica holds the lease and runs its jobs (one replica per lease), by lease."}, []string{"lease"})
	s.TaskRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookline_background_runs_total",
		Help: "Passes of the background jobs on this replica (each pass queries PostgreSQL), by task: schedule, reconcile, prune (a label named job would clash with the scrape job)."}, []string{"task"})
	for _, c := range []prometheus.Collector{s.LeaseHeld, s.TaskRuns, s.AcksFailed, s.HTTPRequests, s.HTTPDuration, s.EventsPublished, s.EventsProcessed,
		s.EventsRejected, s.EventsFiltered, s.Deliveries, s.AttemptDuration, s.EndToEnd, s.RetriesScheduled, s.Waiting, s.EndpointsDisabled} {
		f(c)
	}
	return s
}

// ConsumerStats is what a consumer gauge reads at scrape time.
type ConsumerStats func(ctx context.Context) (pending, ackPending uint64, err error)

// WatchConsumer adds hookline_consumer_pending_messages and
// hookline_consumer_ack_pending_messages for one durable consumer, read at scrape time.
func (s *Set) WatchConsumer(name string, stats ConsumerStats) {
	read := func(ack bool) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			p, a, err := stats(ctx)
			if err != nil {
				return -1 // visible as "unknown" on the dashboard rather than a fake zero
			}
			if ack {
				return float64(a)
			}
			return float64(p)
		}
	}
	labels := prometheus.Labels{"consumer": name}
	s.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hookline_consumer_pending_messages",
			Help: "Messages in the stream not yet delivered to the consumer.", ConstLabels: labels}, read(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hookline_consumer_ack_pending_messages",
			Help: "Messages delivered to the consumer and not yet acknowledged.", ConstLabels: labels}, read(true)),
	)
}

// Handler serves the registry in the Prometheus text format.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry})
}

func (s *Set) mux(ready func(context.Context) error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"message":"ok","data":{},"error":false}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			// The message names what is missing (database, nats, a consumer not consuming).
			b, _ := json.Marshal(map[string]any{"message": "not ready: " + err.Error(), "data": struct{}{}, "error": true})
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(b)
			return
		}
		_, _ = w.Write([]byte(`{"message":"ready","data":{},"error":false}`))
	})
	return mux
}

// ServeListener answers /metrics, /healthz (alive) and /readyz (ready reports nil) on ln until
// ctx ends. Processes without the API use it; the ingress serves the same paths through Fiber.
func ServeListener(ctx context.Context, ln net.Listener, s *Set, ready func(context.Context) error) error {
	mux := s.mux(ready)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
