package egress

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// canary is a loopback listener that must never be reached: it counts TCP connections, not
// only HTTP requests (reliability scenarios 24-26).
type canary struct {
	*httptest.Server
	conns atomic.Int64
	port  string
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	c := &canary{}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	c.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	c.Start()
	t.Cleanup(c.Close)
	_, c.port, _ = net.SplitHostPort(c.Listener.Addr().String())
	return c
}

// Scenario 24: the other spellings of loopback and metadata addresses (decimal, octal, hex,
// short forms, IPv4-mapped and NAT64 IPv6) are refused, whether Go reads them as addresses or
// as names that a hostile DNS server answers with 127.0.0.1. The canary on 127.0.0.1 sees no
// connection. With the guard off the same client does reach it through some of them, so the
// refusal is the guard's doing.
func TestDoRefusesEveryAddressSpelling(t *testing.T) {
	cn := newCanary(t)
	dns := startDNS(t) // answers 127.0.0.1 / ::1 for every name
	forms := []string{
		"http://2130706433:" + cn.port + "/",
		"http://0177.0.0.1:" + cn.port + "/",
		"http://0x7f.1:" + cn.port + "/",
		"http://0x7f000001:" + cn.port + "/",
		"http://127.1:" + cn.port + "/",
		"http://0.0.0.0:" + cn.port + "/", // Linux connects 0.0.0.0 to the local host
		"http://[::ffff:127.0.0.1]:" + cn.port + "/",
		"http://[::ffff:7f00:1]:" + cn.port + "/",
		"http://[64:ff9b::7f00:1]:" + cn.port + "/",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://100.100.100.200/latest/meta-data/",
		"http://metadata.rebind.test:" + cn.port + "/", // a name that resolves to loopback
	}
	guarded := New(Options{Resolver: dns.resolver()})
	for _, u := range forms {
		res := guarded.Do(t.Context(), Request{URL: u, Body: []byte(`{}`)})
		if res.StatusCode != 0 || res.Err == nil {
			t.Errorf("Do(%s) = %d %v, want no answer", u, res.StatusCode, res.Err)
		}
		// A lookup that fails is harmless too; anything that connects must be the guard's refusal.
		var dnsErr *net.DNSError
		if !errors.Is(res.Err, ErrBlockedAddress) && !errors.As(res.Err, &dnsErr) {
			t.Errorf("Do(%s) = %v, want ErrBlockedAddress (or a failed lookup)", u, res.Err)
		}
	}
	if n := cn.conns.Load(); n != 0 {
		t.Fatalf("canary on 127.0.0.1 got %d connections, want 0", n)
	}

	open := New(Options{Resolver: dns.resolver(), AllowPrivate: true})
	var reached []string
	for _, u := range forms {
		if strings.Contains(u, ":"+cn.port+"/") && open.Do(t.Context(), Request{URL: u}).StatusCode == http.StatusOK {
			reached = append(reached, u)
		}
	}
	t.Logf("with the guard off these reach the canary: %v", reached)
	if len(reached) == 0 || cn.conns.Load() == 0 {
		t.Fatalf("with the guard off no spelling reached the canary: the test proves nothing")
	}
}

// Scenario 26: a receiver answering 301, 302, 303, 307 or 308 towards the metadata address or
// loopback is not followed: the attempt ends with the 3xx, the canary gets no connection, and
// the receiver only ever sees the POST (no 301/302 downgrade to GET).
func TestDoRedirectsNeverFollowed(t *testing.T) {
	cn := newCanary(t)
	var mu sync.Mutex
	methods := map[string]int{}
	codes := []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}
	targets := []string{"http://169.254.169.254/latest/meta-data/iam/", cn.URL + "/internal"}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods[r.Method]++
		mu.Unlock()
		code, target := codes[0], targets[0]
		for i, c := range codes {
			if strings.HasSuffix(r.URL.Path, "/"+http.StatusText(c)) {
				code = codes[i]
			}
		}
		if r.URL.Query().Get("to") == "loopback" {
			target = targets[1]
		}
		w.Header().Set("Location", target)
		w.WriteHeader(code)
	}))
	t.Cleanup(front.Close)
	// AllowPrivate: the front receiver is on loopback too; the guard cannot be what stops the
	// redirect to the canary here, only not following it.
	c := New(Options{AllowPrivate: true})
	n := 0
	for round := 0; round < 5; round++ {
		for _, code := range codes {
			for _, to := range []string{"metadata", "loopback"} {
				u := front.URL + "/" + http.StatusText(code) + "?to=" + to
				res := c.Do(t.Context(), Request{URL: u, Body: []byte(`{"n":1}`)})
				n++
				if res.Err != nil || res.StatusCode != code {
					t.Fatalf("Do(%s) = %d %v, want %d and no error", u, res.StatusCode, res.Err, code)
				}
			}
		}
	}
	if got := cn.conns.Load(); got != 0 {
		t.Errorf("canary got %d connections after %d redirects, want 0", got, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if methods[http.MethodPost] != n || len(methods) != 1 {
		t.Errorf("front receiver saw %v, want %d POSTs and nothing else", methods, n)
	}
}

// Scenario 25: HTTP_PROXY / HTTPS_PROXY in the dispatcher's environment do not route
// deliveries around the guard: the transport has no proxy, and a request to a name goes
// straight to the address it resolves to, never to the proxy.
func TestDoIgnoresEnvironmentProxy(t *testing.T) {
	proxy := newCanary(t)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	rc := newReceiver(t, ok)
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	dns := startDNS(t)
	c := New(Options{Resolver: dns.resolver(), AllowPrivate: true})
	if c.transport.Proxy != nil {
		t.Fatal("the transport has a Proxy function: an environment proxy would connect on our behalf")
	}
	res := c.Do(t.Context(), Request{URL: "http://receiver.proxy.test:" + port + "/", Body: []byte(`{}`)})
	if res.StatusCode != http.StatusOK || rc.hits.Load() != 1 {
		t.Fatalf("Do = %+v, receiver hits %d; want 200 straight from the receiver", res, rc.hits.Load())
	}
	if n := proxy.conns.Load(); n != 0 {
		t.Fatalf("proxy got %d connections, want 0", n)
	}
}
