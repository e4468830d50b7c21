// Package clustertest runs a JetStream cluster for tests: n nats-server processes on loopback
// (random ports, temporary store directories) whose routes pass through TCP proxies the test
// controls, so a node can be killed with SIGKILL, restarted on the same store, or cut off from
// the others while its clients stay connected to it. Hookline's services connect to it with
// URLs() as NATS_URL and HOOKLINE_STREAM_REPLICAS=3.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a running JetStream cluster. Its methods may be called from several goroutines.
type Cluster struct {
	tb    testing.TB
	bin   string
	nodes []*Node
	// proxies[j][i] carries the route connections node j opens to node i (nil when i == j).
	proxies [][]*proxy
	sink    net.Listener // the address every node advertises for routes: see config
}

// Node is one nats-server of a cluster.
type Node struct {
	Name        string // server_name, n0 … n(N-1)
	ClientPort  int
	MonitorPort int
	RoutePort   int
	StoreDir    string
	Config      string // path of its configuration file
	Log         string // path of its output

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{}
	partitioned bool
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// MonitorURL is the node's monitoring endpoint (/healthz, /jsz, /varz …).
func (n *Node) MonitorURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.MonitorPort) }

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// StartCluster starts n nats-server processes with JetStream clustered over routes and waits
// until every node reports healthy (a meta leader is elected). They are killed when the test
// ends; on failure the end of each node's output is logged.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("clustertest: %d nodes", n)
	}
	bin, err := NATSServerBinary()
	if err != nil {
		tb.Fatalf("clustertest: %v", err)
	}
	c := &Cluster{tb: tb, bin: bin}
	// The sink accepts and closes: a node that learns another's route address by gossip
	// (instead of the proxy it is configured with) fails to reach it there, so every route
	// goes through a proxy. Configured routes are retried forever; gossiped ones once.
	c.sink, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("clustertest: %v", err)
	}
	go func() {
		for {
			conn, err := c.sink.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	dir := tb.TempDir()
	for i := range n {
		nd := &Node{Name: fmt.Sprintf("n%d", i), ClientPort: freePort(tb), MonitorPort: freePort(tb),
			RoutePort: freePort(tb), StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i), "jetstream")}
		nd.Config = filepath.Join(dir, nd.Name+".conf")
		nd.Log = filepath.Join(dir, nd.Name+".log")
		c.nodes = append(c.nodes, nd)
	}
	c.proxies = make([][]*proxy, n)
	for j := range n {
		c.proxies[j] = make([]*proxy, n)
		for i := range n {
			if i == j {
				continue
			}
			p, err := newProxy(fmt.Sprintf("127.0.0.1:%d", c.nodes[i].RoutePort))
			if err != nil {
				tb.Fatalf("clustertest: proxy: %v", err)
			}
			c.proxies[j][i] = p
		}
	}
	tb.Cleanup(c.shutdown)
	for j, nd := range c.nodes {
		if err := os.WriteFile(nd.Config, []byte(c.config(j)), 0o644); err != nil {
			tb.Fatalf("clustertest: %v", err)
		}
	}
	for i := range c.nodes {
		c.start(i)
	}
	for i := range c.nodes {
		c.WaitHealthy(i, 60*time.Second)
	}
	c.waitPlacement(60 * time.Second)
	return c
}

// waitPlacement waits until the meta leader places a stream on every node: healthy nodes may
// still be "offline" to it for a moment, when creating an R-n stream or bucket fails with "no
// suitable peers for placement".
func (c *Cluster) waitPlacement(timeout time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = c.tryPlacement(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.tb.Fatalf("clustertest: no stream placed on all %d nodes after %s: %v", len(c.nodes), timeout, err)
}

func (c *Cluster) tryPlacement() error {
	nc, err := c.majority()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const name = "CLUSTERTEST_PLACEMENT"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"clustertest.placement"},
		Storage: jetstream.MemoryStorage, Replicas: len(c.nodes)}); err != nil {
		return err
	}
	return js.DeleteStream(ctx, name)
}

// config is node j's configuration: its routes are the proxies to the other nodes.
func (c *Cluster) config(j int) string {
	nd := c.nodes[j]
	var routes []string
	for i := range c.nodes {
		if i != j {
			routes = append(routes, fmt.Sprintf("    nats-route://%s", c.proxies[j][i].addr()))
		}
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
logtime: true
jetstream {
  store_dir: %q
}
cluster {
  name: hookline-test
  listen: 127.0.0.1:%d
  advertise: %q
  routes: [
%s
  ]
}
`, nd.Name, nd.ClientPort, nd.MonitorPort, nd.StoreDir, nd.RoutePort, c.sink.Addr().String(), strings.Join(routes, "\n"))
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("clustertest: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// N is the number of nodes.
func (c *Cluster) N() int { return len(c.nodes) }

// Node is node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// URLs is every node's client URL, comma-separated, as NATS_URL takes them.
func (c *Cluster) URLs() string {
	var u []string
	for _, nd := range c.nodes {
		u = append(u, nd.URL())
	}
	return strings.Join(u, ",")
}

// Index is the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.Name == name {
			return i
		}
	}
	return -1
}

func (c *Cluster) start(i int) {
	c.tb.Helper()
	nd := c.nodes[i]
	f, err := os.OpenFile(nd.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.tb.Fatalf("clustertest: %v", err)
	}
	cmd := exec.Command(c.bin, "-c", nd.Config)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.tb.Fatalf("clustertest: start %s: %v", nd.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	nd.mu.Lock()
	nd.cmd, nd.done = cmd, done
	nd.mu.Unlock()
}

// signal sends sig to node i and waits for it to exit (30 s, then SIGKILL).
func (c *Cluster) signal(i int, sig syscall.Signal) {
	nd := c.nodes[i]
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.tb.Errorf("clustertest: %s still running 30s after %v: killed", nd.Name, sig)
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill kills node i with SIGKILL and waits until it is gone. Its store stays for Restart.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop shuts node i down cleanly (SIGTERM) and waits until it is gone.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

// Restart starts node i again (killing it first if it runs) on the same ports and store, and
// waits until it reports healthy: its streams caught up with their leaders.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	c.Kill(i)
	c.start(i)
	c.WaitHealthy(i, 120*time.Second)
}

// StartNode starts a stopped or killed node i again without waiting for it.
func (c *Cluster) StartNode(i int) {
	c.tb.Helper()
	if c.nodes[i].Running() {
		c.tb.Fatalf("clustertest: %s runs already", c.nodes[i].Name)
	}
	c.start(i)
}

// WaitHealthy waits until node i's /healthz answers 200: JetStream is up, a meta leader is
// known and the node's streams and consumers are current.
func (c *Cluster) WaitHealthy(i int, timeout time.Duration) {
	c.tb.Helper()
	nd := c.nodes[i]
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if !nd.Running() {
			c.tb.Fatalf("clustertest: %s exited:\n%s", nd.Name, tail(nd.Log, 3000))
		}
		resp, err := http.Get(nd.MonitorURL() + "/healthz")
		if err == nil {
			var b [512]byte
			k, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b[:k])
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("clustertest: %s not healthy after %s: %s", nd.Name, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Partition cuts node i off from the other nodes: the proxies close its route connections
// and refuse new ones until Heal. Its client connections stay up.
func (c *Cluster) Partition(i int) { c.setPartitioned(i, true) }

// Heal ends node i's partition: its routes reconnect.
func (c *Cluster) Heal(i int) { c.setPartitioned(i, false) }

func (c *Cluster) setPartitioned(i int, cut bool) {
	c.nodes[i].mu.Lock()
	c.nodes[i].partitioned = cut
	c.nodes[i].mu.Unlock()
	for j := range c.nodes {
		if j != i {
			c.proxies[j][i].setBlocked(cut)
			c.proxies[i][j].setBlocked(cut)
		}
	}
}

// Partitioned reports whether node i is cut off.
func (c *Cluster) Partitioned(i int) bool {
	c.nodes[i].mu.Lock()
	defer c.nodes[i].mu.Unlock()
	return c.nodes[i].partitioned
}

// Connect connects to every node's URL; the connection reconnects forever and is closed
// when the test ends.
func (c *Cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatalf("clustertest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// majority connects to a running node that is not cut off, for questions only the
// majority's leaders answer truly.
func (c *Cluster) majority() (*nats.Conn, error) {
	var lastErr error = fmt.Errorf("no running node outside a partition")
	for i, nd := range c.nodes {
		if !nd.Running() || c.Partitioned(i) {
			continue
		}
		nc, err := nats.Connect(nd.URL(), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err == nil {
			return nc, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// onMajority runs ask with JetStream through a node outside any partition and a 5 s deadline.
func (c *Cluster) onMajority(ask func(context.Context, jetstream.JetStream) error) error {
	nc, err := c.majority()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ask(ctx, js)
}

// StreamInfo asks the stream's leader (through a node outside any partition) for its info.
func (c *Cluster) StreamInfo(stream string) (info *jetstream.StreamInfo, err error) {
	err = c.onMajority(func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			info, err = s.Info(ctx)
		}
		return err
	})
	return info, err
}

// ConsumerInfo asks the consumer's leader (through a node outside any partition) for its info.
func (c *Cluster) ConsumerInfo(stream, consumer string) (info *jetstream.ConsumerInfo, err error) {
	err = c.onMajority(func(ctx context.Context, js jetstream.JetStream) error {
		cons, err := js.Consumer(ctx, stream, consumer)
		if err == nil {
			info, err = cons.Info(ctx)
		}
		return err
	})
	return info, err
}

// LeaderOf waits (up to 60 s) until stream has a leader outside any partition and returns its
// node's index.
func (c *Cluster) LeaderOf(stream string) int {
	c.tb.Helper()
	return c.waitLeader("stream "+stream, func() (*jetstream.ClusterInfo, error) {
		si, err := c.StreamInfo(stream)
		if err != nil {
			return nil, err
		}
		return si.Cluster, nil
	})
}

// ConsumerLeaderOf waits (up to 60 s) until the consumer has a leader outside any partition
// and returns its node's index.
func (c *Cluster) ConsumerLeaderOf(stream, consumer string) int {
	c.tb.Helper()
	return c.waitLeader("consumer "+stream+"/"+consumer, func() (*jetstream.ClusterInfo, error) {
		ci, err := c.ConsumerInfo(stream, consumer)
		if err != nil {
			return nil, err
		}
		return ci.Cluster, nil
	})
}

// MoveLeader makes node i the leader of stream (consumer "") or of the stream's consumer: the
// leader steps down with node i as the preferred successor, until node i leads (60 s at most).
func (c *Cluster) MoveLeader(stream, consumer string, i int) {
	c.tb.Helper()
	subject, leader := "$JS.API.STREAM.LEADER.STEPDOWN."+stream, func() int { return c.LeaderOf(stream) }
	if consumer != "" {
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
		leader = func() int { return c.ConsumerLeaderOf(stream, consumer) }
	}
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, c.nodes[i].Name)
	deadline := time.Now().Add(60 * time.Second)
	for leader() != i {
		if time.Now().After(deadline) {
			c.tb.Fatalf("clustertest: %s %s not led by %s after 60s", stream, consumer, c.nodes[i].Name)
		}
		nc, err := c.majority()
		if err == nil {
			_, _ = nc.Request(subject, []byte(req), 5*time.Second)
			nc.Close()
		}
		time.Sleep(time.Second)
	}
}

func (c *Cluster) waitLeader(what string, info func() (*jetstream.ClusterInfo, error)) int {
	c.tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ci, err := info()
		if err == nil && ci != nil {
			if i := c.Index(ci.Leader); i >= 0 && c.nodes[i].Running() && !c.Partitioned(i) {
				return i
			}
			err = fmt.Errorf("leader %q", ci.Leader)
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("clustertest: no leader of %s after 60s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ClientsNamed is how many client connections named name node i has, from its /connz.
func (c *Cluster) ClientsNamed(i int, name string) (int, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(c.nodes[i].MonitorURL() + "/connz?limit=1024")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var cz server.Connz
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return 0, fmt.Errorf("%s /connz: %w", c.nodes[i].Name, err)
	}
	n := 0
	for _, ci := range cz.Conns {
		if ci.Name == name {
			n++
		}
	}
	return n, nil
}

// StreamState is one node's own copy of a stream, from its /jsz.
type StreamState struct {
	Msgs, FirstSeq, LastSeq uint64
	Created                 time.Time
	Leader                  string // as this node sees it
}

// NodeStreams reads node i's own state of every stream from its monitoring endpoint.
func (c *Cluster) NodeStreams(i int) (map[string]StreamState, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(c.nodes[i].MonitorURL() + "/jsz?accounts=true&streams=true")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jsz server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", c.nodes[i].Name, err)
	}
	out := map[string]StreamState{}
	for _, acc := range jsz.AccountDetails {
		for _, sd := range acc.Streams {
			st := StreamState{Msgs: sd.State.Msgs, FirstSeq: sd.State.FirstSeq, LastSeq: sd.State.LastSeq, Created: sd.Created}
			if sd.Cluster != nil {
				st.Leader = sd.Cluster.Leader
			}
			out[sd.Name] = st
		}
	}
	return out, nil
}

// WaitCaughtUp waits until every node reports the same last sequence of stream, and that
// sequence is at least min, and returns it.
func (c *Cluster) WaitCaughtUp(stream string, min uint64, timeout time.Duration) uint64 {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var seqs []uint64
		var err error
		for i := range c.nodes {
			var st map[string]StreamState
			st, err = c.NodeStreams(i)
			if err != nil {
				break
			}
			seqs = append(seqs, st[stream].LastSeq)
		}
		if err == nil && seqs[0] >= min && allEqual(seqs) {
			return seqs[0]
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("clustertest: %s not caught up after %s: last sequences %v (%v)", stream, timeout, seqs, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func allEqual(s []uint64) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return true
}

func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.Kill(i)
	}
	for _, row := range c.proxies {
		for _, p := range row {
			if p != nil {
				p.close()
			}
		}
	}
	if c.sink != nil {
		c.sink.Close()
	}
	if c.tb.Failed() {
		for _, nd := range c.nodes {
			c.tb.Logf("clustertest: %s output (%s), route connects and closes left out:\n%s", nd.Name, nd.Log, quietTail(nd.Log, 4000))
		}
	}
}

// quietTail is the end of a node's output without the lines of route connections made and
// closed (a partition makes thousands), with their count.
func quietTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	var keep []string
	churn := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Route connection created") || strings.HasSuffix(l, "Router connection closed: Client Closed") {
			churn++
			continue
		}
		keep = append(keep, l)
	}
	out := strings.Join(keep, "\n")
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return fmt.Sprintf("%s\n(%d route connect/close lines)", out, churn)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
