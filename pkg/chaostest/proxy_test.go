package chaostest

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// tcpProxy forwards connections from its own port to target (the private PostgreSQL cluster)
// until blackhole(true): then it stops forwarding in both directions without closing or
// refusing anything, as a network that drops packets would (connections stay open, new ones
// are accepted, bytes wait). blackhole(false) lets what waited through.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	holes  bool
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *tcpProxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close() // the server is down: refused, as a direct connection would be
		return
	}
	if !p.track(c, up) {
		return
	}
	var once sync.Once
	end := func() {
		once.Do(func() {
			c.Close()
			up.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, up)
			p.mu.Unlock()
		})
	}
	go p.pipe(up, c, end)
	go p.pipe(c, up, end)
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst; while the proxy is a black hole, nothing read is written (nor is a
// close passed on) until it forwards again.
func (p *tcpProxy) pipe(dst, src net.Conn, end func()) {
	defer end()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.waitForwarding()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *tcpProxy) waitForwarding() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.holes && !p.closed {
		p.cond.Wait()
	}
}

// blackhole stops (true) or resumes (false) forwarding.
func (p *tcpProxy) blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holes = on
	p.cond.Broadcast()
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
	for c := range conns {
		c.Close()
	}
}
