package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/natsx/embedded"
	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/store"
)

// benchDB owns the benchmark's database on the local server: recreated empty for every run,
// dropped at the end.
type benchDB struct {
	serverURL string // .../postgres
	name      string
}

func (b benchDB) url() string {
	u, err := url.Parse(b.serverURL)
	if err != nil {
		return b.serverURL
	}
	u.Path = "/" + b.name
	return u.String()
}

func (b benchDB) admin(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, b.serverURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", b.serverURL, err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// recreate drops the database and creates it empty.
func (b benchDB) recreate(ctx context.Context) error {
	if err := b.drop(ctx); err != nil {
		return err
	}
	if err := b.admin(ctx, "CREATE DATABASE "+b.name); err != nil {
		return fmt.Errorf("create database %s: %w", b.name, err)
	}
	return nil
}

// reset recreates the database and applies the migrations.
func (b benchDB) reset(ctx context.Context) error {
	if err := b.recreate(ctx); err != nil {
		return err
	}
	db, err := store.Open(ctx, b.url(), 2)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.MigrateUp(ctx)
	return err
}

func (b benchDB) drop(ctx context.Context) error {
	return b.admin(ctx, "DROP DATABASE IF EXISTS "+b.name+" WITH (FORCE)")
}

// sysOptions choose how the system under test runs.
type sysOptions struct {
	processes    bool   // three services as separate processes (else all in this process)
	noDispatcher bool   // start without the dispatcher (backlog drain); StartDispatcher later
	nodes        int    // 0: as above; 1 or 3: the roles apart on NATS nodes the bench hosts, streams at R<nodes>
	syncAlways   bool   // HOOKLINE_NATS_SYNC=always
	binDir       string // built service binaries (processes mode)
	dataDir      string
	dbURL        string
	adminKey     string
	logFile      *os.File
}

// system is a running Hookline.
type system struct {
	o       sysOptions
	APIURL  string
	NATSURL string
	nats    *server.Server   // the bench's own NATS server, when it runs one
	cluster []*server.Server // the bench's NATS cluster (cluster scenario, R3)
	inproc  []func() error   // stop functions of in-process roles, last first
	procs   map[string]*exec.Cmd
	mu      sync.Mutex
	started []string
}

func benchConfig(o sysOptions) config.Config {
	cfg := config.Default("127.0.0.1:0")
	cfg.DatabaseURL = o.dbURL
	cfg.NATSListen = "127.0.0.1:0"
	cfg.NATSMonitor = "127.0.0.1:0"
	cfg.DataDir = o.dataDir
	cfg.AllowPrivateTargets = true // receivers are on loopback
	cfg.NATSSyncAlways = o.syncAlways
	cfg.AdminAPIKey = o.adminKey
	if o.nodes > 0 {
		cfg.StreamReplicas = o.nodes
	}
	return cfg
}

func startSystem(ctx context.Context, o sysOptions) (*system, error) {
	s := &system{o: o, procs: map[string]*exec.Cmd{}}
	if !o.processes && !o.noDispatcher && o.nodes == 0 {
		// The all-in-one exactly as `make run` runs it: embedded NATS, in-process connection.
		addr, natsURL, stop, err := s.runInProcess(ctx, benchConfig(o), service.AllInOne)
		if err != nil {
			return nil, err
		}
		s.APIURL, s.NATSURL = "http://"+addr, natsURL
		s.inproc = append(s.inproc, stop)
		return s, nil
	}
	if o.nodes > 1 {
		servers, urls, err := startCluster(ctx, filepath.Join(o.dataDir, "nats"), o.nodes)
		if err != nil {
			return nil, err
		}
		s.cluster, s.NATSURL = servers, urls
		return s, s.startRoles(ctx)
	}
	// The bench hosts NATS so that services can come and go.
	srv, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", Monitor: "127.0.0.1:0",
		StoreDir: filepath.Join(o.dataDir, "nats"), SyncAlways: o.syncAlways})
	if err != nil {
		return nil, err
	}
	s.nats, s.NATSURL = srv, srv.ClientURL()
	return s, s.startRoles(ctx)
}

// startRoles starts ingress, processor and (unless noDispatcher) dispatcher apart.
func (s *system) startRoles(ctx context.Context) error {
	roles := []service.Role{service.Ingress, service.Processor}
	if !s.o.noDispatcher {
		roles = append(roles, service.Dispatcher)
	}
	for _, r := range roles {
		if err := s.start(ctx, r); err != nil {
			s.stop()
			return err
		}
	}
	return nil
}

// StartDispatcher starts the dispatcher of a system started without it.
func (s *system) StartDispatcher(ctx context.Context) error { return s.start(ctx, service.Dispatcher) }

func (s *system) start(ctx context.Context, r service.Role) error {
	cfg := benchConfig(s.o)
	cfg.NATSURL = s.NATSURL
	if !s.o.processes {
		addr, _, stop, err := s.runInProcess(ctx, cfg, r)
		if err != nil {
			return err
		}
		if r == service.Ingress {
			s.APIURL = "http://" + addr
		}
		s.inproc = append(s.inproc, stop)
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(filepath.Join(s.o.binDir, r.String()))
	cmd.Env = append(os.Environ(),
		"HOOKLINE_HTTP_ADDR="+addr, "DATABASE_URL="+cfg.DatabaseURL, "NATS_URL="+s.NATSURL,
		"HOOKLINE_DATA_DIR="+cfg.DataDir, "HOOKLINE_ALLOW_PRIVATE_TARGETS=true",
		"HOOKLINE_ADMIN_API_KEY="+cfg.AdminAPIKey)
	cmd.Stdout, cmd.Stderr = s.o.logFile, s.o.logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r, err)
	}
	s.mu.Lock()
	s.procs[r.String()] = cmd
	s.mu.Unlock()
	if err := waitReady(ctx, "http://"+addr+"/readyz", 60*time.Second); err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	if r == service.Ingress {
		s.APIURL = "http://" + addr
	}
	return nil
}

func (s *system) runInProcess(ctx context.Context, cfg config.Config, r service.Role) (string, string, func() error, error) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	type ready struct{ addr, nats string }
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(s.o.logFile, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tune := service.Tuning{Ready: func(a, n string) { readyCh <- ready{a, n} }}
	go func() { done <- service.Run(rctx, log, cfg, r, tune) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New(r.String() + ": not stopped after 30s")
		}
	}
	select {
	case rd := <-readyCh:
		return rd.addr, rd.nats, stop, nil
	case err := <-done:
		cancel()
		return "", "", nil, fmt.Errorf("%s did not start: %v", r, err)
	case <-time.After(60 * time.Second):
		_ = stop()
		return "", "", nil, fmt.Errorf("%s not ready after 60s", r)
	}
}

func (s *system) stop() {
	for i := len(s.inproc) - 1; i >= 0; i-- {
		if err := s.inproc[i](); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stop: %v\n", err)
		}
	}
	s.inproc = nil
	for name, cmd := range s.procs {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		delete(s.procs, name)
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	for _, n := range s.cluster {
		n.Shutdown()
		n.WaitForShutdown()
	}
	s.cluster = nil
}

// resetPeakRSS clears VmHWM of this process and the service processes (Linux clear_refs 5).
func (s *system) resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	for _, c := range s.procs {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.Process.Pid), []byte("5"), 0)
	}
}

// peakRSS is VmHWM in MiB of each process: "bench" (this process: load generator, receivers,
// NATS and, in-process, the services) and each service process.
func (s *system) peakRSS() map[string]float64 {
	out := map[string]float64{"bench": vmHWM("self")}
	for name, c := range s.procs {
		out[name] = vmHWM(strconv.Itoa(c.Process.Pid))
	}
	return out
}

func vmHWM(pid string) float64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (last: %v)", url, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// benchType is the event type the generators publish.
const benchType = "bench.event"

// registerEndpoints creates the bench event type and one webhook per endpoint through the
// public API (so the benchmark does not depend on the store's internals): webhook i belongs
// to user i+1 and receives bench.event and upload.completed.
func registerEndpoints(ctx context.Context, api, key string, urls []string) ([]string, error) {
	var types []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := apiDo(ctx, http.MethodGet, api+"/event_type", key, nil, &types); err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, t := range types {
		ids[t.Name] = t.ID
	}
	if ids[benchType] == "" {
		var t struct {
			ID string `json:"id"`
		}
		if err := apiDo(ctx, http.MethodPost, api+"/event_type", key, map[string]any{"name": benchType, "description": "benchmark events"}, &t); err != nil {
			return nil, err
		}
		ids[benchType] = t.ID
	}
	var out []string
	for i, u := range urls {
		var w struct {
			ID string `json:"id"`
		}
		err := apiDo(ctx, http.MethodPost, api+"/webhook/register", key, map[string]any{"user_id": i + 1, "url": u,
			"event_type_ids": []string{ids[benchType], ids["upload.completed"]}}, &w)
		if err != nil {
			return nil, err
		}
		out = append(out, w.ID)
	}
	return out, nil
}

// apiDo sends body (if not nil) as JSON with the key and decodes the envelope's data into out.
func apiDo(ctx context.Context, method, url, key string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
		Error   bool            `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s %s: %d, %w", method, url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || env.Error {
		return fmt.Errorf("%s %s: %d %s %s", method, url, resp.StatusCode, env.Message, env.Data)
	}
	return json.Unmarshal(env.Data, out)
}

func randomKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "bench_" + hex.EncodeToString(b)
}
