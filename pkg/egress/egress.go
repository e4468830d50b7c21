// Package egress owns Hookline's outbound HTTP: one webhook POST per call,
// with an address guard applied at dial time (after DNS resolution), a
// deadline over the whole attempt, a capped response body and no redirects.
// It returns errors in Result and does not log.
package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/webhook"
)

const (
	defaultTimeout          = 15 * time.Second
	defaultMaxResponseBytes = 64 << 10
	// drainBytes is how much unread response body Do discards after the kept
	// part so the keep-alive connection can be reused; beyond it the
	// connection is closed instead.
	drainBytes = 64 << 10
	userAgent  = "Hookline-Webhooks/1.0"
)

// Options configures a Client. Zero values select the defaults.
type Options struct {
	Timeout          time.Duration // whole attempt (dial to body read); 0 = 15s
	MaxResponseBytes int64         // response body bytes read and kept; 0 = 64 KiB
	AllowPrivate     bool          // HOOKLINE_ALLOW_PRIVATE_TARGETS: turns the address guard off
	Resolver         *net.Resolver // nil = net.DefaultResolver; tests inject one
	MaxConnsPerHost  int           // 0 = no limit per host
}

// Client sends webhook POSTs. It is safe for concurrent use and should be
// shared: it pools connections per host.
type Client struct {
	http         *http.Client
	transport    *http.Transport
	timeout      time.Duration
	allowPrivate bool
	bufs         sync.Pool // *[]byte of maxBody bytes, for reading response bodies
}

// New builds a Client.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = defaultMaxResponseBytes
	}
	d := &net.Dialer{
		// No dial timeout of its own: the attempt's context bounds it.
		KeepAlive: 30 * time.Second,
		Resolver:  o.Resolver,
	}
	if !o.AllowPrivate {
		// The guard sits in Control, which sees each resolved IP right before
		// connect(2): no DNS answer, rebinding or happy-eyeballs fallback can
		// reach an address that was not checked.
		d.Control = control
	}
	t := &http.Transport{
		// Proxy stays nil: an environment proxy would connect on our behalf
		// and route around the dial-time guard.
		Proxy:       nil,
		DialContext: d.DialContext,
		// HTTP/1.1 only: a timed-out attempt closes its own connection instead
		// of leaving a shared HTTP/2 connection that may be stalled.
		ForceAttemptHTTP2:   false,
		Protocols:           http1Only(),
		MaxIdleConns:        0, // no global cap; IdleConnTimeout reaps
		MaxIdleConnsPerHost: 1024,
		// No per-host cap by default: many webhooks often share one host, and a cap
		// shared by all of them would let one hung webhook starve the others. The
		// dispatcher bounds connections per webhook (HOOKLINE_ENDPOINT_CONCURRENCY).
		MaxConnsPerHost:        o.MaxConnsPerHost,
		IdleConnTimeout:        30 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		MaxResponseHeaderBytes: 64 << 10,
		// No Accept-Encoding: the excerpt is small and a gzip reader per
		// response is wasted work.
		DisableCompression: true,
	}
	c := &Client{
		http: &http.Client{
			Transport: t,
			// 3xx is a failed attempt; following it could also lead to an
			// address the receiver chose (the guard would still apply).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport:    t,
		timeout:      o.Timeout,
		allowPrivate: o.AllowPrivate,
	}
	max := o.MaxResponseBytes
	c.bufs.New = func() any {
		b := make([]byte, max)
		return &b
	}
	return c
}

func http1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}

// CloseIdleConnections closes pooled keep-alive connections; call it on
// shutdown. In-flight attempts are not affected.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// Request is one webhook POST.
type Request struct {
	URL                      string
	Headers                  map[string]string // custom headers, set first
	ID, Timestamp, Signature string            // webhook-id, webhook-timestamp, webhook-signature headers, set after custom headers (so they win)
	Body                     []byte            // Content-Type: application/json always
	Timeout                  time.Duration     // this attempt's limit; 0 = Options.Timeout
}

// Result of one attempt. Err is set for a transport failure (dial refused,
// timeout, blocked address, redirect, TLS); StatusCode is 0 then. Once the
// response headers arrived the attempt has a StatusCode and Err is nil: an
// error while reading the body only shortens Body.
type Result struct {
	StatusCode int
	RetryAfter string // the Retry-After response header, raw
	Location   string // the Location header of a 3xx, which is never followed
	Body       []byte // at most MaxResponseBytes of the response body
	Latency    time.Duration
	Err        error
}

// Do performs one attempt. It never follows redirects: a 3xx is returned as a
// Result with its StatusCode and Err = nil (the caller counts 3xx as a failed
// attempt). ctx bounds the attempt together with Request.Timeout (else Options.Timeout). Errors do
// not carry the URL (it may hold a token).
func (c *Client) Do(parent context.Context, r Request) Result {
	start := time.Now()
	timeout := c.timeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return Result{Err: stripURL(err), Latency: time.Since(start)}
	}
	if !c.allowPrivate {
		// A literal IP is refused here without opening a socket; hostnames
		// are judged at dial time, after resolution.
		if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil && Blocked(ip) {
			return Result{Err: fmt.Errorf("dial %s: %w", ip, ErrBlockedAddress), Latency: time.Since(start)}
		}
	}
	setHeaders(req, r)

	resp, err := c.http.Do(req)
	if err != nil {
		err = stripURL(err)
		if ctx.Err() != nil && parent.Err() == nil { // our Timeout, not the caller's ctx
			err = fmt.Errorf("no response within %s: %w", timeout, err)
		}
		return Result{Err: err, Latency: time.Since(start)}
	}
	res := Result{StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		res.Location = resp.Header.Get("Location")
	}
	var more bool
	res.Body, more = c.readBody(resp.Body)
	res.Latency = time.Since(start)
	if more && (resp.ContentLength < 0 || resp.ContentLength-int64(len(res.Body)) <= drainBytes) {
		c.drain(resp.Body)
	}
	// Closing a body that is not at EOF drops the connection rather than
	// returning it to the pool.
	resp.Body.Close()
	return res
}

// setHeaders assigns canonical keys directly into a pre-sized map:
// Content-Type first, then custom headers, then the Standard Webhooks headers
// so they win. A custom Content-Type is sent as given only when it says JSON
// (the seed's example registers "application/json"). Hop-by-hop and framing
// headers are dropped (registration already rejects them; this is defence in
// depth).
func setHeaders(req *http.Request, r Request) {
	h := make(http.Header, len(r.Headers)+6)
	// One backing array for every value instead of a []string per header.
	vals := make([]string, 0, len(r.Headers)+5)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set("User-Agent", userAgent) // before custom headers: a receiver may want its own
	set("Content-Type", "application/json")
	for k, v := range r.Headers {
		k = http.CanonicalHeaderKey(k)
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
			"Proxy-Connection", "Upgrade", "Te", "Trailer":
			continue
		case "Content-Type":
			if !webhook.IsJSONMediaType(v) {
				continue
			}
		}
		set(k, v)
	}
	set("Webhook-Id", r.ID)
	set("Webhook-Timestamp", r.Timestamp)
	set("Webhook-Signature", r.Signature)
	req.Header = h
}

// readBody reads at most MaxResponseBytes into a pooled buffer and returns a
// copy, and whether the body may hold more.
func (c *Client) readBody(body io.Reader) ([]byte, bool) {
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	n, err := io.ReadFull(body, *bp)
	if n == 0 {
		return nil, err == nil
	}
	return bytes.Clone((*bp)[:n]), err == nil
}

// drain discards up to drainBytes so the connection can be reused.
func (c *Client) drain(body io.Reader) {
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	buf := *bp
	for left := drainBytes; left > 0; {
		n, err := body.Read(buf[:min(left, len(buf))])
		left -= n
		if err != nil {
			return
		}
	}
}

// stripURL drops *url.Error's "Post \"https://…\":" prefix: the URL may carry
// a receiver's token and callers already know it.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
