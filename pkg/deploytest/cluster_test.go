package deploytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hookline/hookline/pkg/config"
)

const clusterCompose = "docker-compose.cluster.yaml"

// clusterService is the part of a docker-compose.cluster.yaml service these tests read.
type clusterService struct {
	Image    string `yaml:"image"`
	Hostname string `yaml:"hostname"`
	Build    *struct {
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Deploy      *struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func loadCluster(t *testing.T) map[string]clusterService {
	t.Helper()
	doc, _, err := interpolateFile(t, clusterCompose, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]clusterService `yaml:"services"`
	}
	if err := doc.Decode(&c); err != nil {
		t.Fatalf("%s: %v", clusterCompose, err)
	}
	return c.Services
}

var natsNodes = []string{"nats-1", "nats-2", "nats-3"}

// The cluster stack: three NATS nodes, each with its exporter, and 2 ingress, 2 processor and
// 3 dispatcher replicas (issue 11) built like the single stack.
func TestClusterComposeServices(t *testing.T) {
	svcs := loadCluster(t)
	var got []string
	for name := range svcs {
		got = append(got, name)
	}
	sort.Strings(got)
	want := []string{"dispatcher", "grafana", "ingress", "migrate", "nats-1", "nats-2", "nats-3",
		"nats-exporter-1", "nats-exporter-2", "nats-exporter-3", "postgres", "processor", "prometheus"}
	if !slices.Equal(got, want) {
		t.Fatalf("%s services = %v, want %v", clusterCompose, got, want)
	}
	single := loadCompose(t, testEnv)
	for name, replicas := range map[string]int{"ingress": 2, "processor": 2, "dispatcher": 3} {
		s := svcs[name]
		if s.Deploy == nil || s.Deploy.Replicas != replicas {
			t.Errorf("%s: deploy.replicas %+v, want %d", name, s.Deploy, replicas)
		}
		if s.Build == nil || s.Build.Dockerfile != single.Services[name].Build.Dockerfile ||
			s.Build.Args["SERVICE"] != single.Services[name].Build.Args["SERVICE"] || s.Image != single.Services[name].Image {
			t.Errorf("%s: not built like docker-compose.yaml's (build %+v, image %s)", name, s.Build, s.Image)
		}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, []string{"CMD", "/app", "healthcheck"}) {
			t.Errorf("%s healthcheck = %+v, want [CMD /app healthcheck]", name, s.Healthcheck)
		}
	}
	// A fixed host port cannot be shared by replicas: a range with one port per replica.
	if p := svcs["ingress"].Ports; len(p) != 1 || !strings.HasSuffix(p[0], "8081-8082:8081") {
		t.Errorf("ingress ports %v, want one host port per replica (8081-8082:8081)", p)
	}
}

// Every Hookline replica runs R3 and knows every node; its environment is one pkg/config reads
// and accepts.
func TestClusterComposeEnvironment(t *testing.T) {
	svcs := loadCluster(t)
	names := configNames(t)
	for _, name := range []string{"ingress", "processor", "dispatcher"} {
		env := svcs[name].Environment
		for k := range env {
			if !names[k] {
				t.Errorf("%s: environment %s is not read by pkg/config", name, k)
			}
		}
		if env["HOOKLINE_STREAM_REPLICAS"] != "3" {
			t.Errorf("%s: HOOKLINE_STREAM_REPLICAS=%q, want 3", name, env["HOOKLINE_STREAM_REPLICAS"])
		}
		var hosts []string
		for _, u := range strings.Split(env["NATS_URL"], ",") {
			p, err := url.Parse(u)
			if err != nil || p.Scheme != "nats" || p.Port() != "4222" || p.User.Username() != testEnv["NATS_USER"] {
				t.Errorf("%s: NATS_URL entry %q: %v", name, u, err)
				continue
			}
			hosts = append(hosts, p.Hostname())
		}
		if !slices.Equal(hosts, natsNodes) {
			t.Errorf("%s: NATS_URL names %v, want every node %v", name, hosts, natsNodes)
		}
		if _, err := config.Load(func(k string) string { return env[k] }, ":0"); err != nil {
			t.Errorf("%s: config.Load: %v", name, err)
		}
	}
	// Every ${VAR} is one .env.example documents (the single stack's test checks the reverse).
	example := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(read(t, ".env.example"))))
	for sc.Scan() {
		if name, _, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(name, "#") {
			example[name] = true
		}
	}
	_, refs, err := interpolateFile(t, clusterCompose, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !example[r] {
			t.Errorf("%s uses ${%s}, which .env.example does not list", clusterCompose, r)
		}
	}
}

// The three nodes run the production config under their own names, which are the hosts its
// routes name, each on its own volume; each has an exporter on its monitoring port.
func TestClusterComposeNATSNodes(t *testing.T) {
	svcs := loadCluster(t)
	conf := loadNATSConf(t, "nats-1")
	var routeHosts []string
	for _, r := range conf.Routes {
		routeHosts = append(routeHosts, r.Hostname())
		if r.Port() != strconv.Itoa(conf.Cluster.Port) {
			t.Errorf("route %s: port is not the cluster port %d", r, conf.Cluster.Port)
		}
	}
	sort.Strings(routeHosts)
	if !slices.Equal(routeHosts, natsNodes) {
		t.Errorf("nats-server.conf routes to %v, want the compose nodes %v", routeHosts, natsNodes)
	}
	volumes := map[string]string{}
	exporters := map[string]string{} // node -> exporter
	for name, s := range svcs {
		if strings.HasPrefix(name, "nats-exporter-") {
			target := s.Command[len(s.Command)-1]
			u, err := url.Parse(target)
			if err != nil || u.Port() != strconv.Itoa(conf.HTTPPort) {
				t.Errorf("%s scrapes %q, want a node's monitoring port %d", name, target, conf.HTTPPort)
				continue
			}
			exporters[u.Hostname()] = name
		}
	}
	for _, node := range natsNodes {
		s := svcs[node]
		if s.Hostname != node || s.Environment["NATS_SERVER_NAME"] != node {
			t.Errorf("%s: hostname %q, NATS_SERVER_NAME %q; want both %s", node, s.Hostname, s.Environment["NATS_SERVER_NAME"], node)
		}
		if !slices.Equal(s.Command, []string{"-c", "/etc/nats/nats-server.conf"}) {
			t.Errorf("%s: command %v, want the production config", node, s.Command)
		}
		var mountsConf bool
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if src == "./deployments/nats/nats-server.conf" && strings.HasPrefix(dst, "/etc/nats/nats-server.conf") {
				mountsConf = true
			}
			if strings.HasPrefix(dst, "/data") {
				if other, dup := volumes[src]; dup {
					t.Errorf("%s and %s share the volume %s", node, other, src)
				}
				volumes[src] = node
			}
		}
		if !mountsConf {
			t.Errorf("%s does not mount deployments/nats/nats-server.conf (volumes %v)", node, s.Volumes)
		}
		if exporters[node] == "" {
			t.Errorf("no nats-exporter scrapes %s", node)
		}
		if s.Environment["NATS_USER"] != testEnv["NATS_USER"] || s.Environment["NATS_PASSWORD"] != testEnv["NATS_PASSWORD"] {
			t.Errorf("%s: NATS_USER/NATS_PASSWORD not those of the services' NATS_URL", node)
		}
	}
	if len(volumes) != 3 {
		t.Errorf("nodes' data volumes %v, want one per node", volumes)
	}
}

// Prometheus scrapes every replica (a DNS lookup per service, on the port the service listens
// on) and every node's exporter.
func TestClusterComposePrometheus(t *testing.T) {
	svcs := loadCluster(t)
	var file string
	for _, a := range svcs["prometheus"].Command {
		if f, ok := strings.CutPrefix(a, "--config.file=/etc/prometheus/"); ok {
			file = f
		}
	}
	if file == "" {
		t.Fatalf("prometheus command %v names no config under /etc/prometheus", svcs["prometheus"].Command)
	}
	if _, err := os.Stat(filepath.Join(root(t), "deployments", "prometheus", file)); err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(read(t, "deployments/prometheus/"+file), &prom); err != nil {
		t.Fatal(err)
	}
	dns := map[string]int{}
	static := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				dns[n] = d.Port
			}
		}
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				host, _, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, target, err)
				}
				if _, ok := svcs[host]; !ok && host != "localhost" {
					t.Errorf("job %s scrapes %q, which is no service of %s", sc.JobName, host, clusterCompose)
				}
				static[host] = true
			}
		}
	}
	for _, name := range []string{"ingress", "processor", "dispatcher"} {
		_, port, _ := net.SplitHostPort(svcs[name].Environment["HOOKLINE_HTTP_ADDR"])
		if fmt.Sprint(dns[name]) != port {
			t.Errorf("%s: every replica must be a target: want a DNS lookup of %s on port %s, got port %d", name, name, port, dns[name])
		}
	}
	for name := range svcs {
		if strings.HasPrefix(name, "nats-exporter-") && !static[name] {
			t.Errorf("%s is not scraped", name)
		}
	}
}

// The dashboard splits work by replica and NATS traffic by node: with N replicas and three
// nodes, one that stops or lags shows as its own line.
func TestDashboardPerReplicaAndNode(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(read(t, "deployments/grafana/dashboards/hookline.json"), &dash); err != nil {
		t.Fatal(err)
	}
	byInstance := regexp.MustCompile(`by \(([a-z_, ]*)\)`)
	split := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range byInstance.FindAllStringSubmatch(tg.Expr, -1) {
				if !slices.Contains(strings.Split(strings.ReplaceAll(m[1], " ", ""), ","), "instance") {
					continue
				}
				sels, err := selectors(tg.Expr)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range sels {
					split[s.name] = true
				}
			}
		}
	}
	for _, want := range []string{
		"hookline_deliveries_total", "hookline_events_processed_total", "hookline_http_requests_total", // a service's replicas
		"hookline_lease_held", "hookline_background_runs_total", // which replica runs the singleton jobs
		"gnatsd_varz_in_msgs", "gnatsd_varz_connections", "jetstream_stream_last_seq", // the nodes
	} {
		if !split[want] {
			t.Errorf("no dashboard panel shows %s by instance", want)
		}
	}
}
