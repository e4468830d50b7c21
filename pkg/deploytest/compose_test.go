package deploytest

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root: this package is pkg/deploytest.
func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", r, err)
	}
	return r
}

func read(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// composeFile is the part of docker-compose.yaml these tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// testEnv is a filled-in .env for the tests: URL-safe values, as .env.example asks.
var testEnv = map[string]string{
	"POSTGRES_PASSWORD":              "pgsecret0123456789",
	"NATS_USER":                      "hookline",
	"NATS_PASSWORD":                  "natssecret0123456789",
	"HOOKLINE_ADMIN_API_KEY":         "0123456789abcdef0123456789abcdef0123456789abcdef",
	"HOOKLINE_ENCRYPTION_KEY":        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	"GRAFANA_ADMIN_PASSWORD":         "grafana0123456789",
	"HOOKLINE_ALLOW_PRIVATE_TARGETS": "true", // the tests' receivers are on loopback
}

// varRef is a compose interpolation: $$, ${VAR}, ${VAR:?message}, ${VAR:-default} (also
// without the colon) or $VAR.
var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate substitutes variables the way docker compose does with vars as the .env file;
// it returns the names referenced and fails on a required variable that is unset or empty.
func interpolate(text string, vars map[string]string) (string, []string, error) {
	var refs []string
	var errs []string
	out := varRef.ReplaceAllStringFunc(text, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := varRef.FindStringSubmatch(m)
		name, op, arg := g[1], g[2], g[3]
		if name == "" {
			name = g[4]
		}
		refs = append(refs, name)
		v, set := vars[name]
		empty := !set || (strings.HasPrefix(op, ":") && v == "")
		switch strings.TrimPrefix(op, ":") {
		case "?":
			if empty {
				errs = append(errs, fmt.Sprintf("%s: %s", name, arg))
			}
		case "-":
			if empty {
				return arg
			}
		}
		return v
	})
	if errs != nil {
		return "", refs, fmt.Errorf("required variables: %s", strings.Join(errs, "; "))
	}
	return out, refs, nil
}

// loadCompose reads docker-compose.yaml interpolated with vars.
func loadCompose(t testing.TB, vars map[string]string) composeFile {
	t.Helper()
	doc, _, err := interpolateCompose(t, vars)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := doc.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return c
}

// interpolateCompose parses docker-compose.yaml and, like compose, interpolates every scalar
// value (not the comments); it returns the variable names referenced.
func interpolateCompose(t testing.TB, vars map[string]string) (*yaml.Node, []string, error) {
	t.Helper()
	return interpolateFile(t, "docker-compose.yaml", vars)
}

// interpolateFile is interpolateCompose for the compose file rel.
func interpolateFile(t testing.TB, rel string, vars map[string]string) (*yaml.Node, []string, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(read(t, rel), &doc); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	var refs []string
	var errs []error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.ScalarNode:
			v, r, err := interpolate(n.Value, vars)
			refs = append(refs, r...)
			if err != nil {
				errs = append(errs, err)
			}
			n.Value = v
		case yaml.AliasNode: // its anchor is walked where it is defined
		default:
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(&doc)
	return &doc, refs, errors.Join(errs...)
}

// hooklineServices are the compose services built from this repository, by name.
func hooklineServices(c composeFile) []string {
	var names []string
	for name, s := range c.Services {
		if s.Build != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func TestComposeServiceNames(t *testing.T) {
	c := loadCompose(t, testEnv)
	var got []string
	for name := range c.Services {
		got = append(got, name)
	}
	sort.Strings(got)
	// DESIGN §10, "Deployment files".
	want := []string{"dispatcher", "grafana", "ingress", "migrate", "nats", "nats-exporter", "postgres", "processor", "prometheus"}
	if !slices.Equal(got, want) {
		t.Errorf("compose services = %v, want %v", got, want)
	}
	if b := hooklineServices(c); !slices.Equal(b, []string{"dispatcher", "ingress", "migrate", "processor"}) {
		t.Errorf("services built here = %v, want dispatcher, ingress, migrate, processor", b)
	}
	for _, name := range []string{"ingress", "processor", "dispatcher"} {
		hc := c.Services[name].Healthcheck
		if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/app", "healthcheck"}) {
			t.Errorf("%s healthcheck = %+v, want [CMD /app healthcheck]", name, hc)
		}
	}
}

// Every ${VAR} of the compose file is documented in .env.example and every .env.example
// entry is used; a required one that is missing stops compose (and this parse) with its name.
func TestComposeVariablesMatchEnvExample(t *testing.T) {
	example := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(read(t, ".env.example"))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: %q is not NAME=value", line)
			continue
		}
		example[name] = true
	}
	_, refs, err := interpolateCompose(t, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, r := range refs {
		used[r] = true
		if !example[r] {
			t.Errorf("docker-compose.yaml uses ${%s}, which .env.example does not list", r)
		}
	}
	for name := range example {
		if !used[name] {
			t.Errorf(".env.example lists %s, which docker-compose.yaml never uses", name)
		}
	}
	_, _, err = interpolateCompose(t, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "POSTGRES_PASSWORD: set POSTGRES_PASSWORD in .env") {
		t.Errorf("compose with an empty .env: %v, want the required variables named", err)
	}
}

// Each build context and Dockerfile exists, every COPY source exists in the context and is
// not excluded by the Dockerfile's .dockerignore, and SERVICE names a service module.
func TestComposeBuildContexts(t *testing.T) {
	r := root(t)
	c := loadCompose(t, testEnv)
	for _, name := range hooklineServices(c) {
		b := c.Services[name].Build
		ctx := filepath.Join(r, b.Context)
		if fi, err := os.Stat(ctx); err != nil || !fi.IsDir() {
			t.Errorf("%s: build context %q: %v", name, b.Context, err)
			continue
		}
		df := filepath.Join(ctx, b.Dockerfile)
		if b.Dockerfile == "" {
			df = filepath.Join(ctx, "Dockerfile")
		}
		text, err := os.ReadFile(df)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ignored := dockerignore(t, df+".dockerignore")
		for _, src := range copySources(string(text)) {
			if _, err := os.Stat(filepath.Join(ctx, src)); err != nil {
				t.Errorf("%s: %s: COPY %s: %v", name, b.Dockerfile, src, err)
			}
			if ignored[strings.TrimSuffix(filepath.Clean(src), "/")] {
				t.Errorf("%s: COPY %s is excluded by %s.dockerignore", name, src, b.Dockerfile)
			}
		}
		svc := b.Args["SERVICE"]
		if _, err := os.Stat(filepath.Join(r, "services", svc, "go.mod")); err != nil {
			t.Errorf("%s: build arg SERVICE=%q is not a service module: %v", name, svc, err)
		}
		if want := "hookline/" + svc + ":local"; c.Services[name].Image != want {
			t.Errorf("%s: image %q, want %q", name, c.Services[name].Image, want)
		}
	}
}

// copySources returns the sources of every COPY of the build context (not --from a stage).
func copySources(dockerfile string) []string {
	var out []string
	joined := strings.ReplaceAll(dockerfile, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.EqualFold(f[0], "COPY") {
			continue
		}
		var args []string
		fromStage := false
		for _, a := range f[1:] {
			if strings.HasPrefix(a, "--from=") {
				fromStage = true
			}
			if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			}
		}
		if !fromStage && len(args) >= 2 {
			out = append(out, args[:len(args)-1]...)
		}
	}
	return out
}

// dockerignore returns the plain (wildcard-free) paths a .dockerignore excludes.
func dockerignore(t testing.TB, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.ContainsAny(line, "*?[!") {
			continue
		}
		out[strings.TrimSuffix(filepath.Clean(line), "/")] = true
	}
	return out
}

// configNames collects the variable names pkg/config reads: its string literals that look
// like HOOKLINE_*, DATABASE_URL or NATS_URL.
func configNames(t testing.TB) map[string]bool {
	t.Helper()
	path := filepath.Join(root(t), "pkg", "config", "config.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	isVar := regexp.MustCompile(`^(HOOKLINE_[A-Z0-9_]+|DATABASE_URL|NATS_URL)$`)
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && isVar.MatchString(s) {
				names[s] = true
			}
		}
		return true
	})
	if len(names) < 20 {
		t.Fatalf("found only %d variable names in %s: %v", len(names), path, names)
	}
	return names
}

// Every variable set for a Hookline container is one the code reads, and it parses.
func TestComposeEnvironmentIsRead(t *testing.T) {
	names := configNames(t)
	c := loadCompose(t, testEnv)
	for _, svc := range hooklineServices(c) {
		for k := range c.Services[svc].Environment {
			if !names[k] {
				t.Errorf("%s: environment %s is not read by pkg/config", svc, k)
			}
		}
	}
	for _, want := range []string{"HOOKLINE_HTTP_ADDR", "DATABASE_URL", "NATS_URL", "HOOKLINE_LOG_DIR", "HOOKLINE_TEST_DATABASE_URL"} {
		if want == "HOOKLINE_TEST_DATABASE_URL" {
			if names[want] {
				t.Errorf("pkg/config reads %s, which only tests use", want)
			}
			continue
		}
		if !names[want] {
			t.Errorf("pkg/config does not read %s", want)
		}
	}
}

// The port each service listens on in compose is the one Prometheus scrapes and the one
// DESIGN §10 gives it.
func TestComposePortsMatchPrometheus(t *testing.T) {
	c := loadCompose(t, testEnv)
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(read(t, "deployments/prometheus/prometheus.yml"), &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]string{} // host -> port
	for _, sc := range prom.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, target, err)
				}
				scraped[host] = port
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped[n] = strconv.Itoa(d.Port)
			}
		}
	}
	for svc, port := range map[string]string{"ingress": "8081", "processor": "8082", "dispatcher": "8083"} {
		_, got, err := net.SplitHostPort(c.Services[svc].Environment["HOOKLINE_HTTP_ADDR"])
		if err != nil || got != port {
			t.Errorf("%s: HOOKLINE_HTTP_ADDR port %q (%v), want %s", svc, got, err, port)
		}
		if scraped[svc] != port {
			t.Errorf("prometheus.yml scrapes %s on port %q, want %s", svc, scraped[svc], port)
		}
	}
	for host := range scraped {
		if _, ok := c.Services[host]; !ok && host != "localhost" {
			t.Errorf("prometheus.yml scrapes %q, which is no compose service", host)
		}
	}
}
