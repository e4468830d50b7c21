package deploytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// buildServices builds each service module as CI does (GOWORK=off, from services/<name>, so
// each go.mod must resolve on its own) and returns the binaries' paths by module name. The
// builds run one after another: they share most packages through the build cache, and the
// flags match `make build`, so a warm cache turns them into links.
func buildServices(t *testing.T, names ...string) map[string]string {
	t.Helper()
	r, dir := root(t), t.TempDir()
	bins := map[string]string{}
	for _, name := range names {
		bins[name] = filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", bins[name], ".")
		cmd.Dir = filepath.Join(r, "services", name)
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOWORK=off go build in services/%s: %v\n%s", name, err, out)
		}
	}
	return bins
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a service binary running as a subprocess.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // Wait's result, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs bin with exactly env (no inherited variables) in a temp working directory; the
// process is killed if it still runs when the test ends.
func start(t *testing.T, name, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = t.TempDir() // the relative default HOOKLINE_DATA_DIR (./data) lands here
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// wait returns the exit code, or fails the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s", p.name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// ready polls http://addr/readyz until it answers 200.
func (p *proc) ready(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready (%v):\n%s", p.name, p.err, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /readyz not 200 after %s (last: %v)", p.name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testServerURL is the PostgreSQL server the tests use (as in storetest).
func testServerURL() string {
	if u := os.Getenv("HOOKLINE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return storetest.DefaultURL
}

// mapDatabaseURL points compose's DATABASE_URL (host postgres) at the test server and
// database name, keeping compose's query parameters.
func mapDatabaseURL(t *testing.T, composeURL, dbName string) string {
	t.Helper()
	u, err := url.Parse(composeURL)
	if err != nil {
		t.Fatalf("compose DATABASE_URL: %v", err)
	}
	if u.Hostname() != "postgres" || u.Port() != "5432" || u.Path != "/hookline" {
		t.Fatalf("compose DATABASE_URL points at %s%s, want postgres:5432/hookline", u.Host, u.Path)
	}
	test, err := url.Parse(testServerURL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range test.Query() {
		q[k] = v
	}
	test.Path, test.RawQuery = "/"+dbName, q.Encode()
	return test.String()
}

// The compose stack without Docker: the migration job's command on an empty server, then
// ingress, processor and dispatcher as built with GOWORK=off, each with its compose
// environment (nats and postgres mapped to loopback, the HTTP port made free), become ready,
// pass their container health check, deliver a webhook together, and exit 0 on SIGTERM.
func TestComposeStackRunsAndStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service binaries")
	}
	c := loadCompose(t, testEnv)
	bins := buildServices(t, "hookline", "ingress", "processor", "dispatcher")

	// NATS as compose runs it: JetStream, with the user and password of NATS_URL.
	natsURL, err := url.Parse(c.Services["ingress"].Environment["NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if natsURL.Hostname() != "nats" || natsURL.Port() != "4222" {
		t.Fatalf("compose NATS_URL points at %s, want nats:4222", natsURL.Host)
	}
	pass, _ := natsURL.User.Password()
	if natsURL.User.Username() != testEnv["NATS_USER"] || pass != testEnv["NATS_PASSWORD"] {
		t.Fatalf("compose NATS_URL credentials %s, want NATS_USER:NATS_PASSWORD", natsURL.User)
	}
	ns := natstest.StartWith(t, func(o *server.Options) {
		o.Username, o.Password = natsURL.User.Username(), pass
	})
	natsAddr := ns.Addr().String()

	// The migration job creates and migrates a database of its own.
	dbName := fmt.Sprintf("hookline_test_%d_compose", os.Getpid())
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, testServerURL())
		if err != nil {
			t.Errorf("drop %s: %v", dbName, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", dbName, err)
		}
	})
	mig := c.Services["migrate"]
	env := map[string]string{}
	for k, v := range mig.Environment {
		env[k] = v
	}
	env["DATABASE_URL"] = mapDatabaseURL(t, env["DATABASE_URL"], dbName)
	m := start(t, "migrate", bins["hookline"], env, mig.Command...)
	if code := m.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("migrate %v exited %d:\n%s", mig.Command, code, m.out.String())
	}

	type running struct {
		*proc
		addr string
		env  map[string]string
	}
	var procs []running
	for _, name := range []string{"ingress", "processor", "dispatcher"} {
		env := map[string]string{}
		for k, v := range c.Services[name].Environment {
			env[k] = v
		}
		env["DATABASE_URL"] = mapDatabaseURL(t, env["DATABASE_URL"], dbName)
		u, _ := url.Parse(env["NATS_URL"])
		u.Host = natsAddr
		env["NATS_URL"] = u.String()
		addr := freeAddr(t)
		env["HOOKLINE_HTTP_ADDR"] = addr
		procs = append(procs, running{start(t, name, bins[name], env), addr, env})
	}
	for _, p := range procs {
		p.ready(t, p.addr, 60*time.Second)
		// The container health check: `/app healthcheck` with the same environment.
		hc := start(t, p.name+" healthcheck", bins[p.name], p.env, c.Services[p.name].Healthcheck.Test[2:]...)
		if code := hc.wait(t, 10*time.Second); code != 0 {
			t.Errorf("%s healthcheck exited %d:\n%s", p.name, code, hc.out.String())
		}
		for _, path := range []string{"/healthz", "/metrics"} {
			resp, err := http.Get("http://" + p.addr + path)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s GET %s = %v, %v", p.name, path, resp, err)
			} else {
				resp.Body.Close()
			}
		}
	}

	// One webhook through the three processes.
	var got sync.WaitGroup
	got.Add(1)
	var once sync.Once
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(got.Done)
	}))
	defer rv.Close()
	deliverThrough(t, "http://"+procs[0].addr, rv.URL)
	delivered := make(chan struct{})
	go func() { got.Wait(); close(delivered) }()
	select {
	case <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook delivered through ingress, processor and dispatcher after 20s")
	}

	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("%s: SIGTERM: %v", p.name, err)
		}
	}
	for _, p := range procs {
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0:\n%s", p.name, code, p.out.String())
		}
		if out := p.out.String(); !strings.Contains(out, `"msg":"stopped"`) {
			t.Errorf("%s: no \"stopped\" log line:\n%s", p.name, out)
		}
	}
}

// deliverThrough registers target for upload.completed on the ingress at api and uploads a
// file to it, with the compose admin key (as an operator's first curl would).
func deliverThrough(t *testing.T, api, target string) {
	t.Helper()
	id := registerWebhook(t, api, target)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "compose.txt")
	_, _ = fw.Write([]byte("through the compose stack"))
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, api+"/upload_file/webhook_id/"+id, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	apiCall(t, req, nil)
}
