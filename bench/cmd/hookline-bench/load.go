package main

import (
	"bytes"
	"context"
	"mime/multipart"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
)

// natsGen publishes bench events straight to events.bench.event (the floor: floor.bench.event),
// as another service would: JSON per pkg/event with a Nats-Msg-Id, asynchronously, counting
// acks and errors.
type natsGen struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	subject   string
	prefix    string
	seq       atomic.Int64
	errors    atomic.Int64
	endpoints int
}

// newNATSGen publishes to subject ("events."+benchType for Hookline).
func newNATSGen(url, subject, prefix string, endpoints int) (*natsGen, error) {
	nc, err := nats.Connect(url, nats.Name("hookline-bench"))
	if err != nil {
		return nil, err
	}
	g := &natsGen{nc: nc, subject: subject, prefix: prefix, endpoints: max(endpoints, 1)}
	g.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { g.errors.Add(1) }))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return g, nil
}

// eventBody is the pkg/event JSON of event n for user (1-based), stamped with now.
func eventBody(b []byte, id string, user int, n int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","type":"`+benchType+`","user_id":`...)
	b = strconv.AppendInt(b, int64(user), 10)
	b = append(b, `,"data":{"t":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `,"note":"hookline bench event"}}`...)
	return b
}

// publishTo sends the next event to endpoint ep (its user's webhook).
func (g *natsGen) publishTo(ep int) error { return g.send(g.seq.Add(1), ep) }

// send publishes event n to endpoint ep.
func (g *natsGen) send(n int64, ep int) error {
	id := g.prefix + strconv.FormatInt(n, 10)
	m := &nats.Msg{Subject: g.subject, Data: eventBody(make([]byte, 0, 160), id, ep+1, n),
		Header: nats.Header{nats.MsgIdHdr: []string{id}}}
	_, err := g.js.PublishMsgAsync(m)
	if err != nil {
		g.errors.Add(1)
	}
	return err
}

// publish sends the next event; it returns the endpoint index the event targets.
func (g *natsGen) publish() (int, error) {
	n := g.seq.Add(1)
	ep := int(n % int64(g.endpoints))
	return ep, g.send(n, ep)
}

func (g *natsGen) flush(timeout time.Duration) {
	select {
	case <-g.js.PublishAsyncComplete():
	case <-time.After(timeout):
	}
}

func (g *natsGen) close() { g.nc.Close() }

// closedLoop publishes as fast as the pipeline delivers: it keeps at most window events
// published but not yet received (counting only events to endpoints that count), so the
// backlog stays bounded and the rate measured is what the system sustains.
func closedLoop(ctx context.Context, publish func() (int, error), counts func(int) bool, received func() int64, window int64) int64 {
	var sent int64
	for ctx.Err() == nil {
		if sent-received() > window {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		ep, err := publish()
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		if counts(ep) {
			sent++
		}
	}
	return sent
}

// fixedRate calls send rate times a second until ctx ends (open loop: a slow system does not
// slow the generator). Sends are spread over 1 ms ticks.
func fixedRate(ctx context.Context, rate int, send func()) int64 {
	start := time.Now()
	var sent int64
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return sent
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * float64(rate))
		for ; sent < due; sent++ {
			send()
		}
	}
}

// httpGen posts events to POST /events or small files to /upload_file/webhook_id/{id} with
// fasthttp, recording each reply's latency.
type httpGen struct {
	c         *fasthttp.Client
	api       string
	key       string
	prefix    string
	seq       atomic.Int64
	ok, fail  atomic.Int64
	replies   *latencies
	start     time.Time
	webhooks  []string
	endpoints int
}

func newHTTPGen(api, key, prefix string, webhooks []string, start time.Time) *httpGen {
	return &httpGen{c: &fasthttp.Client{MaxConnsPerHost: 2048, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		MaxIdleConnDuration: time.Minute}, api: api, key: key, prefix: prefix, replies: &latencies{},
		start: start, webhooks: webhooks, endpoints: max(len(webhooks), 1)}
}

func (g *httpGen) postEvent() {
	n := g.seq.Add(1)
	id := g.prefix + strconv.FormatInt(n, 10)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(g.api + "/events")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.SetBody(eventBody(make([]byte, 0, 160), id, int(n%int64(g.endpoints))+1, n))
	g.do(req, resp)
}

var uploadContent = bytes.Repeat([]byte("hookline bench upload\n"), 46) // ~1 KiB

func (g *httpGen) upload() {
	n := g.seq.Add(1)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "bench-"+strconv.FormatInt(n, 10)+".txt")
	_, _ = fw.Write(uploadContent)
	_ = mw.Close()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(g.api + "/upload_file/webhook_id/" + g.webhooks[int(n%int64(len(g.webhooks)))])
	req.Header.SetMethod("POST")
	req.Header.SetContentType(mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.SetBody(buf.Bytes())
	g.do(req, resp)
}

func (g *httpGen) do(req *fasthttp.Request, resp *fasthttp.Response) {
	t0 := time.Now()
	err := g.c.Do(req, resp)
	d := time.Since(t0)
	if err != nil || resp.StatusCode() != 200 {
		g.fail.Add(1)
		if err == nil && g.fail.Load() <= 3 {
			debugf("http %s: %d %s", req.URI().Path(), resp.StatusCode(), resp.Body())
		} else if err != nil && g.fail.Load() <= 3 {
			debugf("http %s: %v", req.URI().Path(), err)
		}
		return
	}
	g.ok.Add(1)
	g.replies.add(t0.Sub(g.start), float64(d.Microseconds())/1000)
}

// workers runs send from n goroutines until ctx ends (closed loop: each waits for its reply).
func workers(ctx context.Context, n int, send func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				send()
			}
		}()
	}
	wg.Wait()
}

// openLoopHTTP sends at rate from a pool of goroutines; a tick that finds the pool exhausted
// is counted as dropped (the generator, not the system, was the limit then).
func openLoopHTTP(ctx context.Context, rate, pool int, send func()) (dropped int64) {
	tokens := make(chan struct{}, pool)
	var wg sync.WaitGroup
	for range pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				send()
			}
		}()
	}
	fixedRate(ctx, rate, func() {
		select {
		case tokens <- struct{}{}:
		default:
			dropped++
		}
	})
	close(tokens)
	wg.Wait()
	return dropped
}
