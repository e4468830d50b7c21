package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/hookline/hookline/pkg/natsx/embedded"
)

// floor is the yardstick of the floor scenario: the least a delivery costs on this machine with
// Hookline's durability, and nothing else. JetStream on the same embedded server (file store,
// default sync, in-process connection as in the all-in-one) → a pull consumer → one COPY per
// batch of whatever is queued into PostgreSQL (synchronous_commit=on, committed before the
// batch's acks; a few batches at once so one's commit overlaps the next) → a POST of the body to
// the receiver over keep-alive connections → one AckAll per batch once every POST of the batch
// and of the batches before it got a 2xx. No signing, no routing, no attempt log, no retry
// schedule: what Hookline does on top of this is what the ratios of the report measure.
type floor struct {
	srv     *server.Server
	nc      *nats.Conn
	pg      []*pgx.Conn
	hc      *fasthttp.Client
	url     string
	NATSURL string
	stop    func()
	take    sync.Mutex // one copier takes a batch at a time, so batches queue for acks in order
	broken  atomic.Bool
}

const (
	floorStream   = "FLOOR"
	floorSubject  = "floor." + benchType
	floorBatchMax = 4096 // rows per COPY at most
	floorPending  = 8192 // the consumer's MaxAckPending
	// COPYs at once, one connection each. Measured (8 s runs): with 1, p50 at 1,000/s is
	// ~0.5 ms higher (a message waits for the COPY in flight); with 4, saturation is ~20% lower
	// (smaller batches, more commits, PostgreSQL backends competing for the 2 cores).
	floorCopiers = 2
	floorPosters = 32 // concurrent POSTs (= keep-alive connections), as HOOKLINE_ENDPOINT_CONCURRENCY
)

// floorBatch is one COPY's messages; wg counts its POSTs not yet answered with a 2xx.
type floorBatch struct {
	msgs   []jetstream.Msg
	wg     sync.WaitGroup
	failed atomic.Bool // its COPY failed or a POST was given up at shutdown: no more acks
}

type floorJob struct {
	m jetstream.Msg
	b *floorBatch
}

// startFloor runs the floor on its own NATS server under dataDir, writing to dbURL and posting
// to target, until close.
func startFloor(ctx context.Context, dataDir, dbURL, target string) (*floor, error) {
	srv, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dataDir, "nats")})
	if err != nil {
		return nil, err
	}
	f := &floor{srv: srv, NATSURL: srv.ClientURL(), url: target,
		hc: &fasthttp.Client{MaxConnsPerHost: floorPosters, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second,
			MaxIdleConnDuration: time.Minute}}
	if err := f.start(ctx, dbURL); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *floor) start(ctx context.Context, dbURL string) error {
	var err error
	if f.nc, err = nats.Connect(f.NATSURL, nats.InProcessServer(f.srv), nats.Name("floor")); err != nil {
		return err
	}
	js, err := jetstream.New(f.nc)
	if err != nil {
		return err
	}
	// As Hookline's EVENTS: file storage, limits retention, a duplicate window for Nats-Msg-Id.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: floorStream, Subjects: []string{"floor.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Duplicates: 2 * time.Minute}); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, floorStream, jetstream.ConsumerConfig{Durable: "floor",
		AckPolicy: jetstream.AckAllPolicy, AckWait: 45 * time.Second, MaxAckPending: floorPending})
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	for range floorCopiers {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		f.pg = append(f.pg, c)
	}
	if _, err := f.pg[0].Exec(ctx, `CREATE TABLE floor_deliveries (seq bigint PRIMARY KEY, msg_id text NOT NULL, body bytea NOT NULL)`); err != nil {
		return fmt.Errorf("create floor table: %w", err)
	}
	// The callback never blocks: the server has at most floorPending messages unacked.
	in := make(chan jetstream.Msg, floorPending)
	cc, err := cons.Consume(func(m jetstream.Msg) { in <- m }, jetstream.PullMaxMessages(1024),
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	jobs := make(chan floorJob, floorPending)
	acks := make(chan *floorBatch, floorPending)
	var copiers, rest sync.WaitGroup
	for _, pg := range f.pg {
		copiers.Add(1)
		go func() { defer copiers.Done(); f.copyLoop(rctx, pg, in, jobs, acks) }()
	}
	for range floorPosters {
		rest.Add(1)
		go func() { defer rest.Done(); f.postLoop(rctx, jobs) }()
	}
	rest.Add(1)
	go func() {
		defer rest.Done()
		for b := range acks {
			b.wg.Wait()
			if b.failed.Load() {
				f.broken.Store(true)
			}
			if !f.broken.Load() {
				_ = b.msgs[len(b.msgs)-1].Ack() // AckAll: this batch and every one before it
			}
		}
	}()
	f.stop = func() {
		cc.Stop()
		cancel()
		copiers.Wait()
		close(jobs)
		close(acks)
		rest.Wait()
	}
	return nil
}

// copyLoop takes a batch of whatever has arrived, queues it for the acker, writes it with one
// COPY (its own transaction) and hands its messages to the posters.
func (f *floor) copyLoop(ctx context.Context, pg *pgx.Conn, in <-chan jetstream.Msg, jobs chan<- floorJob, acks chan<- *floorBatch) {
	cols := []string{"seq", "msg_id", "body"}
	for {
		b, ok := f.takeBatch(ctx, in, acks)
		if !ok {
			return
		}
		_, err := pg.CopyFrom(ctx, pgx.Identifier{"floor_deliveries"}, cols, pgx.CopyFromSlice(len(b.msgs), func(i int) ([]any, error) {
			m := b.msgs[i]
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			return []any{int64(md.Sequence.Stream), m.Headers().Get(nats.MsgIdHdr), m.Data()}, nil
		}))
		if err != nil {
			if ctx.Err() == nil {
				debugf("floor: copy: %v", err)
			}
			b.failed.Store(true)
			for range b.msgs {
				b.wg.Done()
			}
			continue
		}
		for _, m := range b.msgs {
			jobs <- floorJob{m, b}
		}
	}
}

// takeBatch waits for a message, adds whatever else is queued and queues the batch for the
// acker, all under f.take so that batches reach the acker in delivery order.
func (f *floor) takeBatch(ctx context.Context, in <-chan jetstream.Msg, acks chan<- *floorBatch) (*floorBatch, bool) {
	f.take.Lock()
	defer f.take.Unlock()
	var first jetstream.Msg
	select {
	case <-ctx.Done():
		return nil, false
	case first = <-in:
	}
	b := &floorBatch{msgs: []jetstream.Msg{first}}
	for len(b.msgs) < floorBatchMax {
		select {
		case m := <-in:
			b.msgs = append(b.msgs, m)
			continue
		default:
		}
		break
	}
	b.wg.Add(len(b.msgs))
	acks <- b
	return b, true
}

// postLoop POSTs each job's body until the receiver answers 2xx (or the floor stops).
func (f *floor) postLoop(ctx context.Context, jobs <-chan floorJob) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(f.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	for j := range jobs {
		req.SetBodyRaw(j.m.Data())
		for {
			err := f.hc.Do(req, resp)
			if err == nil && resp.StatusCode()/100 == 2 {
				break
			}
			if ctx.Err() != nil {
				j.b.failed.Store(true)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		j.b.wg.Done()
	}
}

func (f *floor) close() {
	if f.stop != nil {
		f.stop()
	}
	for _, c := range f.pg {
		_ = c.Close(context.Background())
	}
	if f.nc != nil {
		f.nc.Close()
	}
	f.srv.Shutdown()
	f.srv.WaitForShutdown()
}
