package chaostest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBin is where the PostgreSQL server binaries (initdb, pg_ctl) live: HOOKLINE_CHAOS_PG_BIN,
// else Debian's /usr/lib/postgresql/<newest version>/bin.
var pgBin = func() string {
	if dir := os.Getenv("HOOKLINE_CHAOS_PG_BIN"); dir != "" {
		return dir
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	if len(dirs) == 0 {
		return "/usr/lib/postgresql/15/bin"
	}
	return dirs[len(dirs)-1]
}()

// Keys the services are started with (test values, never used elsewhere).
const (
	adminKey      = "chaos-admin-0123456789abcdef0123456789abcdef"
	encryptionKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

// skipUnlessChaos keeps the suite out of `make test`: each scenario runs for a minute or more.
func skipUnlessChaos(t *testing.T) {
	t.Helper()
	if os.Getenv("HOOKLINE_CHAOS") == "" {
		t.Skip("fault-injection scenario: run with HOOKLINE_CHAOS=1 (make chaos)")
	}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOWORK: %v (run inside the repository)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// binaries are built once per test process, from the work tree at builtFrom.
var (
	buildOnce sync.Once
	bins      map[string]string
	buildErr  error
	builtFrom string // git describe --always --dirty
	binDir    string
)

// TestMain removes the binaries once every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinaries builds the three services, the all-in-one (for `migrate up`) and nats-server
// (the version pkg/go.mod requires, from the module cache) into one temp directory. The
// dispatcher is built with `-tags chaos` (its crash points, pkg/dispatcher/fault_chaos.go);
// "dispatcher-production" is the same without the tag, to check it has none.
func buildBinaries(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		root := repoRoot(t)
		if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
			builtFrom = strings.TrimSpace(string(out))
		}
		dir, err := os.MkdirTemp("", "hookline-chaos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		bins = map[string]string{}
		for _, s := range []string{"ingress", "processor", "dispatcher", "dispatcher-production", "hookline"} {
			bins[s] = filepath.Join(dir, s)
			args := []string{"build", "-o", bins[s]}
			if s == "dispatcher" {
				args = append(args, "-tags", "chaos")
			}
			s, _, _ = strings.Cut(s, "-")
			cmd := exec.Command("go", append(args, "./services/"+s)...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build services/%s: %v\n%s", s, err, out)
				return
			}
		}
		bins["nats-server"] = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", bins["nats-server"], "github.com/nats-io/nats-server/v2")
		cmd.Dir = filepath.Join(root, "pkg")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a process the test can kill, stop and start again with the same arguments; its
// output goes to a file so that a long outage's logs cost no test memory.
type proc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	env  []string
	dir  string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

func newProc(t *testing.T, name, bin string, env map[string]string, args ...string) *proc {
	p := &proc{t: t, name: name, bin: bin, args: args, dir: t.TempDir()}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	p.log = filepath.Join(p.dir, name+".log")
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s: output in %s:\n%s", name, p.log, tail(p.log, 4000))
		}
	})
	return p
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// start starts the process (again).
func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	env := slices.Clone(p.env)
	p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = p.dir, env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.runs++
	p.mu.Unlock()
}

// kill sends sig and waits for the process to exit (a SIGTERM'd one gets 60 s, then SIGKILL).
// It reports how long the exit took.
func (p *proc) kill(sig syscall.Signal) time.Duration {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return 0
	}
	start := time.Now()
	select {
	case <-done:
		return 0
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.t.Errorf("%s still running 60s after %v: killed", p.name, sig)
		_ = cmd.Process.Kill()
		<-done
	}
	return time.Since(start)
}

// exitCode is the last run's exit code (-1 when killed by a signal or still running).
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// service is a Hookline service process with its HTTP address.
type service struct {
	*proc
	addr string
}

// ready polls /readyz until it answers 200.
func (s *service) ready(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-done:
			s.t.Fatalf("%s exited before it was ready:\n%s", s.name, tail(s.log, 4000))
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: /readyz not 200 after %s (last: %v)", s.name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setEnv sets (or, with value "", removes) a variable of the process's next start.
func (p *proc) setEnv(name, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env = slices.DeleteFunc(p.env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	if value != "" {
		p.env = append(p.env, name+"="+value)
	}
}

// exited waits until the process has exited by itself, at most timeout.
func (p *proc) exited(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// logLines counts the lines of the process's log (all its runs).
func (p *proc) logLines() int {
	b, _ := os.ReadFile(p.log)
	return bytes.Count(b, []byte("\n"))
}

// restart kills the service with sig, waits gap, starts it again and waits until it is ready.
func (s *service) restart(sig syscall.Signal, gap time.Duration) {
	s.t.Helper()
	s.kill(sig)
	time.Sleep(gap)
	s.start()
	s.ready(60 * time.Second)
}

// pgCluster is a private PostgreSQL cluster in a temp directory, on its own port, run as the
// postgres OS user (initdb refuses root). It is never the system server on 5432.
type pgCluster struct {
	t    *testing.T
	dir  string
	port int
}

func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pgBin, name)}, args...)...)
	}
	return exec.Command(filepath.Join(pgBin, name), args...)
}

func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skipf("no PostgreSQL server binaries (initdb) in %s: set HOOKLINE_CHAOS_PG_BIN", pgBin)
	}
	// Not t.TempDir: its parents are root's, mode 0700, which the postgres user cannot enter.
	dir, err := os.MkdirTemp("", "hookline-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown postgres %s: %v %s", dir, err, out)
		}
	}
	c := &pgCluster{t: t, dir: dir, port: freePort(t)}
	t.Cleanup(func() {
		c.stop("fast")
		os.RemoveAll(dir)
	})
	if out, err := asPostgres("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start()
	return c
}

func (c *pgCluster) data() string { return filepath.Join(c.dir, "data") }

// start starts the cluster and waits until it accepts connections. fsync is off: the suite
// stops PostgreSQL with -m immediate (a crash of the server, not of the machine), after which
// the OS still holds every write.
func (c *pgCluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", c.port, c.dir)
	if out, err := asPostgres("pg_ctl", "-D", c.data(), "-o", opts, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		c.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, tail(filepath.Join(c.dir, "log"), 2000))
	}
}

// stop stops the cluster in mode (immediate: no checkpoint, crash recovery on the next start).
func (c *pgCluster) stop(mode string) {
	if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err != nil {
		return
	}
	if out, err := asPostgres("pg_ctl", "-D", c.data(), "-m", mode, "-w", "stop").CombinedOutput(); err != nil {
		c.t.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// createDB creates a database and migrates it with the all-in-one's `migrate up`.
func (c *pgCluster) createDB(name, hookline string) string {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		c.t.Fatal(err)
	}
	u := c.url(name)
	cmd := exec.Command(hookline, "migrate", "up")
	cmd.Env = []string{"DATABASE_URL=" + u, "PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("migrate up: %v\n%s", err, out)
	}
	return u
}
