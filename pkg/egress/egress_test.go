package egress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a loopback HTTP server that counts and records what it gets.
type receiver struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
	body []byte
}

func newReceiver(t *testing.T, h http.HandlerFunc) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(rc.wrap(h))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.last, rc.body = r, b
		rc.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}
}

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

func TestDoDelivers(t *testing.T) {
	rc := newReceiver(t, ok)
	c := New(Options{AllowPrivate: true})
	body := []byte(`{"type":"upload.completed","data":{}}`)
	res := c.Do(t.Context(), Request{
		URL: rc.URL + "/hook?x=1",
		Headers: map[string]string{
			"x-custom":     "yes",
			"Content-Type": "text/plain", // not JSON: application/json instead
			"webhook-id":   "spoofed",    // overridden
		},
		ID: "msg_1", Timestamp: "1700000000", Signature: "v1,c2ln",
		Body: body,
	})
	if res.Err != nil || res.StatusCode != 200 || string(res.Body) != "ok" {
		t.Fatalf("Do = %+v, want 200 ok", res)
	}
	if res.Latency <= 0 {
		t.Errorf("Latency = %v, want > 0", res.Latency)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.last.Method != http.MethodPost || rc.last.URL.String() != "/hook?x=1" {
		t.Errorf("request = %s %s, want POST /hook?x=1", rc.last.Method, rc.last.URL)
	}
	if !bytes.Equal(rc.body, body) {
		t.Errorf("body = %q, want %q", rc.body, body)
	}
	want := map[string]string{
		"Content-Type":      "application/json",
		"X-Custom":          "yes",
		"webhook-id":        "msg_1",
		"webhook-timestamp": "1700000000",
		"webhook-signature": "v1,c2ln",
		"User-Agent":        userAgent,
	}
	for k, v := range want {
		if got := rc.last.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, got, v)
		}
	}
	if rc.last.ContentLength != int64(len(body)) {
		t.Errorf("ContentLength = %d, want %d", rc.last.ContentLength, len(body))
	}
}

// TestDoSendsJSONContentTypeAsGiven: a registered Content-Type that says
// JSON (the seed's example) reaches the receiver exactly as registered.
func TestDoSendsJSONContentTypeAsGiven(t *testing.T) {
	rc := newReceiver(t, ok)
	c := New(Options{AllowPrivate: true})
	const ct = "application/json; charset=utf-8"
	res := c.Do(t.Context(), Request{URL: rc.URL, Headers: map[string]string{"content-type": ct}, Body: []byte(`{}`)})
	if res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("Do = %+v, want 200", res)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if got := rc.last.Header.Values("Content-Type"); len(got) != 1 || got[0] != ct {
		t.Errorf("Content-Type = %q, want [%q]", got, ct)
	}
}

func TestDoRefusesLoopbackLiteral(t *testing.T) {
	rc := newReceiver(t, ok)
	res := New(Options{}).Do(t.Context(), Request{URL: rc.URL}) // http://127.0.0.1:port
	if !errors.Is(res.Err, ErrBlockedAddress) || res.StatusCode != 0 {
		t.Fatalf("Do(%s) = %+v, want ErrBlockedAddress", rc.URL, res)
	}
	if n := rc.hits.Load(); n != 0 {
		t.Errorf("receiver saw %d requests, want 0", n)
	}
}

// TestDoRefusesResolvedLoopback resolves a public-looking name through a DNS
// server that answers 127.0.0.1 / ::1 for everything: the dial-time guard
// must refuse what the resolver returned.
func TestDoRefusesResolvedLoopback(t *testing.T) {
	rc := newReceiver(t, ok)
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	dns := startDNS(t)
	c := New(Options{Resolver: dns.resolver()})
	res := c.Do(t.Context(), Request{URL: "http://receiver.rebind.test:" + port + "/"})
	if !errors.Is(res.Err, ErrBlockedAddress) || res.StatusCode != 0 {
		t.Fatalf("Do = %+v, want ErrBlockedAddress", res)
	}
	if dns.queries.Load() == 0 {
		t.Errorf("DNS server saw no query: the name was not resolved through the injected Resolver")
	}
	if n := rc.hits.Load(); n != 0 {
		t.Errorf("receiver saw %d requests, want 0", n)
	}

	// The same client with the guard off reaches the receiver through that
	// resolver, so the refusal above is the guard's doing.
	c = New(Options{Resolver: dns.resolver(), AllowPrivate: true})
	res = c.Do(t.Context(), Request{URL: "http://receiver.rebind.test:" + port + "/"})
	if res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("Do with AllowPrivate = %+v, want 200", res)
	}
}

// TestDoRefusesLiteralWithoutDial checks that literal internal addresses are
// refused before the transport dials anything.
func TestDoRefusesLiteralWithoutDial(t *testing.T) {
	c := New(Options{})
	var dials atomic.Int64
	c.transport.DialContext = func(context.Context, string, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("unexpected dial")
	}
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://169.254.169.254:80/computeMetadata/v1/",
		"https://[::ffff:169.254.169.254]/",
		"http://[fd00:ec2::254]/",
		"http://[fe80::1%25eth0]:8080/",
		"http://0.0.0.0:8080/",
	} {
		res := c.Do(t.Context(), Request{URL: u})
		if !errors.Is(res.Err, ErrBlockedAddress) || res.StatusCode != 0 {
			t.Errorf("Do(%s) = %+v, want ErrBlockedAddress", u, res)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("transport dialed %d times, want 0", n)
	}
}

func TestDoRefusesIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(rc.wrap(ok))
	rc.Listener.Close()
	rc.Listener = ln
	rc.Start()
	t.Cleanup(rc.Close)

	url := rc.URL // http://[::1]:port
	if res := New(Options{AllowPrivate: true}).Do(t.Context(), Request{URL: url}); res.StatusCode != 200 {
		t.Fatalf("Do(%s) with AllowPrivate = %+v, want 200", url, res)
	}
	rc.hits.Store(0)
	res := New(Options{}).Do(t.Context(), Request{URL: url})
	if !errors.Is(res.Err, ErrBlockedAddress) || res.StatusCode != 0 {
		t.Fatalf("Do(%s) = %+v, want ErrBlockedAddress", url, res)
	}
	if n := rc.hits.Load(); n != 0 {
		t.Errorf("receiver saw %d requests, want 0", n)
	}
}

func TestDoDoesNotFollowRedirects(t *testing.T) {
	internal := newReceiver(t, ok)
	front := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/admin", http.StatusFound)
	})
	res := New(Options{AllowPrivate: true}).Do(t.Context(), Request{URL: front.URL, Body: []byte(`{}`)})
	if res.Err != nil || res.StatusCode != http.StatusFound {
		t.Fatalf("Do = %+v, want 302 and no error", res)
	}
	if n := internal.hits.Load(); n != 0 {
		t.Errorf("redirect target saw %d requests, want 0", n)
	}
}

func TestDoTimeout(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before rc.Close
	res := New(Options{AllowPrivate: true, Timeout: 200 * time.Millisecond}).Do(t.Context(), Request{URL: rc.URL})
	if res.Err == nil || res.StatusCode != 0 {
		t.Fatalf("Do = %+v, want a timeout error", res)
	}
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Err = %v, want context.DeadlineExceeded", res.Err)
	}
	if strings.Contains(res.Err.Error(), rc.URL) {
		t.Errorf("Err = %q carries the URL", res.Err)
	}
}

func TestDoCallerContext(t *testing.T) {
	rc := newReceiver(t, ok)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := New(Options{AllowPrivate: true}).Do(ctx, Request{URL: rc.URL})
	if !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("Do(canceled ctx) = %+v, want context.Canceled", res)
	}
}

func TestDoCapsBody(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.Write(big) })
	c := New(Options{AllowPrivate: true})
	res := c.Do(t.Context(), Request{URL: rc.URL})
	if res.Err != nil || res.StatusCode != 200 {
		t.Fatalf("Do = %+v, want 200", res)
	}
	if len(res.Body) != 64<<10 || !bytes.Equal(res.Body, big[:64<<10]) {
		t.Errorf("len(Body) = %d, want the first %d bytes", len(res.Body), 64<<10)
	}
	// The pooled read buffer must not alias the returned body.
	small := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "zz") })
	if res2 := c.Do(t.Context(), Request{URL: small.URL}); string(res2.Body) != "zz" {
		t.Fatalf("second Do body = %q, want zz", res2.Body)
	}
	if !bytes.Equal(res.Body, big[:64<<10]) {
		t.Errorf("first body changed after a second Do")
	}

	c = New(Options{AllowPrivate: true, MaxResponseBytes: 10})
	if res := c.Do(t.Context(), Request{URL: rc.URL}); string(res.Body) != "0123456789" {
		t.Errorf("Body with MaxResponseBytes 10 = %q, want 0123456789", res.Body)
	}
}

func TestDoRetryAfter(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	})
	res := New(Options{AllowPrivate: true}).Do(t.Context(), Request{URL: rc.URL})
	if res.Err != nil || res.StatusCode != 429 || res.RetryAfter != "120" || string(res.Body) != "slow down\n" {
		t.Fatalf("Do = %+v, want 429, Retry-After 120, body %q", res, "slow down\n")
	}
}

func TestDoBadURL(t *testing.T) {
	c := New(Options{})
	for _, u := range []string{"", "ftp://example.com/", "http://%zz/", "http:///nohost"} {
		if res := c.Do(t.Context(), Request{URL: u}); res.Err == nil || res.StatusCode != 0 {
			t.Errorf("Do(%q) = %+v, want an error", u, res)
		}
	}
}

func TestDoReusesConnections(t *testing.T) {
	var conns atomic.Int64
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(rc.wrap(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 100<<10)) // over the cap, under cap + drain
	}))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	rc.Start()
	t.Cleanup(rc.Close)
	c := New(Options{AllowPrivate: true})
	for range 5 {
		if res := c.Do(t.Context(), Request{URL: rc.URL}); res.StatusCode != 200 {
			t.Fatalf("Do = %+v, want 200", res)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections for 5 sequential attempts, want 1", n)
	}
}

// dnsServer answers every A query with 127.0.0.1 and every AAAA query with ::1.
type dnsServer struct {
	conn    net.PacketConn
	queries atomic.Int64
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dns listen: %v", err)
	}
	s := &dnsServer{conn: pc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := s.answer(buf[:n]); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.conn.LocalAddr().String())
		},
	}
}

func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 { // question name labels
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qEnd := i + 5 // zero label, type, class
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	s.queries.Add(1)
	var rdata []byte
	switch qtype {
	case 1: // A
		rdata = []byte{127, 0, 0, 1}
	case 28: // AAAA
		rdata = net.IPv6loopback
	}
	resp := make([]byte, 0, qEnd+28)
	resp = append(resp, q[0], q[1], 0x81, 0x80) // id; QR, RD, RA, NOERROR
	resp = append(resp, 0, 1, 0, 0, 0, 0, 0, 0) // QD=1, AN set below, NS=0, AR=0
	if rdata != nil {
		resp[7] = 1
	}
	resp = append(resp, q[12:qEnd]...)
	if rdata != nil {
		resp = append(resp, 0xc0, 12) // name: pointer to the question
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = append(resp, 0, 1, 0, 0, 0, 60) // class IN, TTL 60
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp
}

func BenchmarkDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	c := New(Options{AllowPrivate: true})
	req := Request{
		URL:     srv.URL + "/hook",
		Headers: map[string]string{"X-Tenant": "acme", "Authorization": "Bearer t"},
		ID:      "msg_2Lk9", Timestamp: "1700000000", Signature: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
		Body: bytes.Repeat([]byte("x"), 512),
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := c.Do(ctx, req); res.Err != nil || res.StatusCode != 200 {
			b.Fatalf("Do = %+v", res)
		}
	}
}

func BenchmarkDoParallel(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	c := New(Options{AllowPrivate: true})
	req := Request{URL: srv.URL + "/hook", ID: "msg_1", Timestamp: "1700000000", Signature: "v1,x", Body: []byte(`{"a":1}`)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := c.Do(context.Background(), req); res.Err != nil || res.StatusCode != 200 {
				b.Errorf("Do = %+v", res)
				return
			}
		}
	})
}
