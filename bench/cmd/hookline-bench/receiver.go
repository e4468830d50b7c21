package main

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// receiver is a set of loopback webhook endpoints (/h/<index>) on one fasthttp server. It
// answers 200 at once, or never (until stop) for a hung endpoint, and records each receipt's
// arrival time and publish-to-receipt latency from the "t" (unix ns) the generator put in the
// event data.
type receiver struct {
	srv  *fasthttp.Server
	ln   net.Listener
	URL  string
	hung []bool
	stop chan struct{}
	rec  *recorder
	// per endpoint receipts
	perEndpoint []atomic.Int64
}

func newReceiver(endpoints int, hung int, rec *recorder) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{ln: ln, URL: "http://" + ln.Addr().String(), hung: make([]bool, endpoints),
		stop: make(chan struct{}), rec: rec, perEndpoint: make([]atomic.Int64, endpoints)}
	for i := 0; i < hung && i < endpoints; i++ {
		r.hung[i] = true
	}
	r.srv = &fasthttp.Server{Handler: r.handle, NoDefaultServerHeader: true, NoDefaultDate: true,
		ReadTimeout: 2 * time.Minute, Concurrency: 1 << 18}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) endpointURL(i int) string { return r.URL + "/h/" + strconv.Itoa(i) }

func (r *receiver) handle(c *fasthttp.RequestCtx) {
	now := time.Now()
	path := c.Path()
	i := 0
	if j := bytes.LastIndexByte(path, '/'); j >= 0 {
		i, _ = strconv.Atoi(string(path[j+1:]))
	}
	if i < 0 || i >= len(r.hung) {
		c.SetStatusCode(404)
		return
	}
	if r.hung[i] {
		select {
		case <-r.stop:
		case <-time.After(10 * time.Minute):
		}
		c.SetStatusCode(200)
		return
	}
	r.perEndpoint[i].Add(1)
	r.rec.receipt(now, stamp(c.PostBody()))
	c.SetStatusCode(200)
}

// stamp finds "t":<digits> in a webhook body; 0 when absent (uploads carry none).
func stamp(body []byte) int64 { return numField(body, `"t":`) }

// numField is the non-negative integer after the first key (`"name":`) in body; 0 when absent.
func numField(body []byte, key string) int64 {
	k := bytes.Index(body, []byte(key))
	if k < 0 {
		return 0
	}
	var v int64
	for _, ch := range body[k+len(key):] {
		if ch < '0' || ch > '9' {
			break
		}
		v = v*10 + int64(ch-'0')
	}
	return v
}

func (r *receiver) close() {
	close(r.stop)
	_ = r.ln.Close()
	done := make(chan struct{})
	go func() { _ = r.srv.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}

// recorder counts receipts and keeps (arrival, latency) samples for percentiles and series.
type recorder struct {
	start time.Time
	count atomic.Int64
	mu    sync.Mutex
	at    []int64 // arrival, ns since start
	lat   []int64 // ns; -1 when the body had no stamp
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) receipt(now time.Time, t int64) {
	l := int64(-1)
	if t > 0 {
		l = now.UnixNano() - t
	}
	r.count.Add(1)
	r.mu.Lock()
	r.at = append(r.at, now.Sub(r.start).Nanoseconds())
	r.lat = append(r.lat, l)
	r.mu.Unlock()
}

// window returns the arrivals and latencies in [from, to) since start.
func (r *recorder) window(from, to time.Duration) (n int, lats []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, a := range r.at {
		if a >= int64(from) && a < int64(to) {
			n++
			if r.lat[i] >= 0 {
				lats = append(lats, float64(r.lat[i])/1e6)
			}
		}
	}
	return n, lats
}

// series buckets receipts per second over [0, to): count/s, p50 and p99 latency (ms).
func (r *recorder) series(to time.Duration) []point {
	secs := int(to / time.Second)
	if secs <= 0 {
		return nil
	}
	buckets := make([][]float64, secs)
	counts := make([]int, secs)
	r.mu.Lock()
	for i, a := range r.at {
		s := int(a / int64(time.Second))
		if s < 0 || s >= secs {
			continue
		}
		counts[s]++
		if r.lat[i] >= 0 {
			buckets[s] = append(buckets[s], float64(r.lat[i])/1e6)
		}
	}
	r.mu.Unlock()
	out := make([]point, secs)
	for s := range out {
		out[s] = point{T: s + 1, Rate: float64(counts[s])}
		if len(buckets[s]) > 0 {
			p := percentiles(buckets[s])
			out[s].P50, out[s].P99 = p.P50, p.P99
		}
	}
	return out
}

type point struct {
	T    int     `json:"t"`
	Rate float64 `json:"rate"`
	P50  float64 `json:"p50_ms,omitempty"`
	P99  float64 `json:"p99_ms,omitempty"`
}

type pcts struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func percentiles(v []float64) pcts {
	if len(v) == 0 {
		return pcts{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return pcts{N: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[len(s)-1]}
}

// latencies collects client-side latencies (ms) from many goroutines.
type latencies struct {
	mu sync.Mutex
	at []int64
	v  []float64
}

func (l *latencies) add(at time.Duration, ms float64) {
	l.mu.Lock()
	l.at = append(l.at, int64(at))
	l.v = append(l.v, ms)
	l.mu.Unlock()
}

func (l *latencies) window(from, to time.Duration) (n int, out []float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, a := range l.at {
		if a >= int64(from) && a < int64(to) {
			out = append(out, l.v[i])
		}
	}
	return len(out), out
}
