package egress

import (
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// anyAddress finds an IPv4 or IPv6 address in a text.
var anyAddress = regexp.MustCompile(`\d{1,3}(\.\d{1,3}){3}|\[?[0-9a-fA-F]*::?[0-9a-fA-F]*:[0-9a-fA-F:]*\]?(:\d+)?|::1`)

// Issue 10, hostile tenants: the error of an attempt a user reads says what class of failure
// it was, never the address the host resolved to. Each failure here is a real one on loopback
// (the guard is off, as with HOOKLINE_ALLOW_PRIVATE_TARGETS, except for the blocked case).
func TestDescribeHidesAddresses(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + "/hook"
	closed.Close()

	hang := make(chan struct{})
	slow := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(hang) })
	tlsRv := httptest.NewTLSServer(http.HandlerFunc(ok))
	t.Cleanup(tlsRv.Close)
	plain := newReceiver(t, ok)
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	dns := startDNS(t)

	open := New(Options{AllowPrivate: true})
	impatient := New(Options{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	guarded := New(Options{Resolver: dns.resolver()})
	for _, c := range []struct {
		name   string
		client *Client
		url    string
		want   string
	}{
		{"refused port", open, refused, "connection refused"},
		{"no response", impatient, slow.URL, "timeout: no response within 300ms"},
		{"untrusted certificate", open, tlsRv.URL, "TLS error: certificate signed by an unknown authority"},
		{"plain HTTP spoken to TLS", open, "https://" + plain.Listener.Addr().String(), "TLS error: the receiver does not speak TLS"},
		{"host resolving to loopback", guarded, "http://internal.rebind.test:" + port + "/", "blocked destination: the host is or resolves to a non-public address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := c.client.Do(t.Context(), Request{URL: c.url, Body: []byte(`{}`)})
			if res.Err == nil {
				t.Fatalf("Do(%s) = %+v, want an error", c.url, res)
			}
			got := Describe(res.Err)
			if got != c.want {
				t.Errorf("Describe(%q) = %q, want %q", res.Err, got, c.want)
			}
			if a := anyAddress.FindString(got); a != "" {
				t.Errorf("Describe(%q) = %q shows the address %s", res.Err, got, a)
			}
		})
	}

	// A DNS failure names the resolver's address in Go's text; the description does not.
	dnsErr := &net.DNSError{Err: "no such host", Name: "hooks.example.com", Server: "10.0.0.2:53", IsNotFound: true}
	if got := Describe(&net.OpError{Op: "dial", Net: "tcp", Err: dnsErr}); got != "DNS failure: no such host" {
		t.Errorf("Describe(%q) = %q, want DNS failure: no such host", dnsErr, got)
	}
	// An error of no known class keeps its words, not its addresses.
	if got := Describe(&net.OpError{Op: "read", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 443},
		Err: net.UnknownNetworkError("odd")}); strings.Contains(got, "10.1.2.3") || !strings.Contains(got, "odd") {
		t.Errorf("Describe of an unknown error = %q, want its words without 10.1.2.3", got)
	}
}
