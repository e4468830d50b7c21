package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/hookline/hookline/pkg/metrics"
)

// series is what a query may name: a metric, its type and its labels.
type series struct {
	histogram bool
	labels    map[string]bool
}

// knownSeries gathers every series metrics.New registers (each vec touched once, both
// consumer gauges watched), plus Prometheus's `up` and what the NATS exporter exports with
// -varz -connz -jsz=all (names from nats-io/prometheus-nats-exporter collector/jsz.go and
// the /varz fields).
func knownSeries(t *testing.T) map[string]series {
	t.Helper()
	m := metrics.New()
	for _, v := range []*prometheus.CounterVec{m.HTTPRequests, m.EventsPublished, m.EventsProcessed, m.EventsRejected, m.Deliveries, m.EndpointsDisabled} {
		touch(t, v.MetricVec)
	}
	touch(t, m.HTTPDuration.MetricVec)
	touch(t, m.LeaseHeld.MetricVec)
	touch(t, m.TaskRuns.MetricVec)
	stats := func(context.Context) (uint64, uint64, error) { return 0, 0, nil }
	m.WatchConsumer("processor", stats)
	m.WatchConsumer("dispatcher", stats)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]series{}
	for _, f := range fams {
		s := series{histogram: f.GetType().String() == "HISTOGRAM", labels: map[string]bool{}}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				s.labels[l.GetName()] = true
			}
		}
		known[f.GetName()] = s
	}
	for _, want := range []string{"hookline_http_requests_total", "hookline_delivery_end_to_end_seconds",
		"hookline_consumer_pending_messages", "hookline_consumer_ack_pending_messages", "hookline_endpoints_disabled_total"} {
		if _, ok := known[want]; !ok {
			t.Fatalf("metrics.New does not register %s", want)
		}
	}
	known["up"] = series{labels: map[string]bool{}}
	server := []string{"server_id"}
	js := []string{"server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader"}
	stream := append(append([]string{}, js...), "account", "account_id", "stream_name", "stream_leader", "is_stream_leader", "stream_raft_group")
	consumer := append(append([]string{}, stream...), "consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc")
	add := func(labels []string, names ...string) {
		for _, n := range names {
			s := series{labels: map[string]bool{}}
			for _, l := range labels {
				s.labels[l] = true
			}
			known[n] = s
		}
	}
	add(server, "gnatsd_varz_connections", "gnatsd_varz_slow_consumers", "gnatsd_varz_in_msgs", "gnatsd_varz_out_msgs",
		"gnatsd_varz_in_bytes", "gnatsd_varz_out_bytes", "gnatsd_varz_mem", "gnatsd_varz_cpu", "gnatsd_varz_subscriptions",
		"gnatsd_connz_num_connections", "gnatsd_connz_total")
	add(js, "jetstream_server_total_streams", "jetstream_server_total_consumers", "jetstream_server_total_messages",
		"jetstream_server_total_message_bytes", "jetstream_server_max_memory", "jetstream_server_max_storage")
	add(stream, "jetstream_stream_total_messages", "jetstream_stream_total_bytes", "jetstream_stream_first_seq",
		"jetstream_stream_last_seq", "jetstream_stream_consumer_count", "jetstream_stream_subject_count")
	add(consumer, "jetstream_consumer_num_pending", "jetstream_consumer_num_ack_pending", "jetstream_consumer_num_redelivered",
		"jetstream_consumer_num_waiting", "jetstream_consumer_delivered_stream_seq", "jetstream_consumer_delivered_consumer_seq")
	return known
}

// touch creates one child of a vec so that Gather reports its family and label names: the
// vec accepts exactly as many values as it has labels.
func touch(t *testing.T, v *prometheus.MetricVec) {
	t.Helper()
	for vals := []string{}; len(vals) <= 8; vals = append(vals, "x") {
		if _, err := v.GetMetricWithLabelValues(vals...); err == nil {
			return
		}
	}
	t.Fatal("could not create a child of a metric vec")
}

// selector is one metric named by a query, with the labels its matchers use.
type selector struct {
	name   string
	labels []string
}

var (
	ident = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// keywords are identifiers of PromQL that are not metric names when not followed by "(".
	keywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "and": true, "or": true, "unless": true, "offset": true, "bool": true,
		"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true, "stdvar": true,
		"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true, "inf": true, "nan": true}
	labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
)

// selectors returns the metrics a PromQL expression names. It is a small scanner, enough for
// dashboards and rules: strings, ranges, label lists and function calls are skipped.
func selectors(expr string) ([]selector, error) {
	var out []selector
	i := 0
	skipTo := func(close byte) error {
		for j := i; j < len(expr); j++ {
			if expr[j] == close {
				i = j + 1
				return nil
			}
		}
		return fmt.Errorf("unclosed %q in %q", close, expr)
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i++
			for i < len(expr) && expr[i] != c {
				if expr[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case c == '[':
			if err := skipTo(']'); err != nil {
				return nil, err
			}
		case c == '{':
			return nil, fmt.Errorf("selector without a metric name at %d in %q", i, expr)
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isWord(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '$': // a Grafana variable, e.g. $__rate_interval
			i++
			for i < len(expr) && isWord(expr[i]) {
				i++
			}
		default:
			id := ident.FindString(expr[i:])
			if id == "" {
				i++
				continue
			}
			i += len(id)
			j := i
			for j < len(expr) && (expr[j] == ' ' || expr[j] == '\n' || expr[j] == '\t') {
				j++
			}
			next := byte(0)
			if j < len(expr) {
				next = expr[j]
			}
			lower := strings.ToLower(id)
			switch {
			case labelLists[lower] && next == '(':
				i = j
				if err := skipTo(')'); err != nil {
					return nil, err
				}
			case lower == "offset":
				i = j
				for i < len(expr) && (isWord(expr[i])) {
					i++
				}
			case next == '(' || keywords[lower]:
				// a function or an aggregation
			default:
				sel := selector{name: id}
				if next == '{' {
					i = j + 1
					for i < len(expr) && expr[i] != '}' {
						if l := ident.FindString(expr[i:]); l != "" {
							sel.labels = append(sel.labels, l)
							i += len(l)
							for i < len(expr) && strings.IndexByte(" =!~", expr[i]) >= 0 {
								i++
							}
							if i < len(expr) && expr[i] == '"' {
								i++
								for i < len(expr) && expr[i] != '"' {
									if expr[i] == '\\' {
										i++
									}
									i++
								}
								i++
							}
							continue
						}
						i++
					}
					i++
				}
				out = append(out, sel)
			}
		}
	}
	return out, nil
}

func isWord(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkExpr reports every metric or matcher label in expr that nothing exports.
func checkExpr(known map[string]series, where, expr string) []string {
	sels, err := selectors(expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", where, err)}
	}
	if len(sels) == 0 {
		return []string{fmt.Sprintf("%s: %q names no metric", where, expr)}
	}
	var problems []string
	for _, s := range sels {
		name, extra := s.name, map[string]bool{"job": true, "instance": true, "__name__": true}
		k, ok := known[name]
		if !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suf); cut && known[base].histogram {
					k, ok = known[base], true
					extra["le"] = suf == "_bucket"
				}
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s is not exported by Hookline or the NATS exporter", where, name))
			continue
		}
		for _, l := range s.labels {
			if !k.labels[l] && !extra[l] {
				problems = append(problems, fmt.Sprintf("%s: %s has no label %q", where, name, l))
			}
		}
	}
	return problems
}

func TestSelectorsScanner(t *testing.T) {
	got, err := selectors(`sum by (le, route) (rate(hookline_http_request_duration_seconds_bucket{status=~"5..", route!="/x"}[$__rate_interval]))
		/ ignoring(le) up offset 15m and on(job) (x or vector(0)) > 0.5e3`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.name+"{"+strings.Join(s.labels, ",")+"}")
	}
	want := "hookline_http_request_duration_seconds_bucket{status,route} up{} x{}"
	if strings.Join(names, " ") != want {
		t.Fatalf("selectors = %v, want %s", names, want)
	}
}

// Every query of the provisioned dashboard names only series the code registers or the NATS
// exporter exports, and the panels use the provisioned data source.
func TestDashboardQueriesUseRegisteredMetrics(t *testing.T) {
	known := knownSeries(t)
	var dash struct {
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(read(t, "deployments/grafana/dashboards/hookline.json"), &dash); err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"` // a collapsed row's panels
	}
	var problems []string
	queries, rows := 0, 0
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type == "row" {
				rows++
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				problems = append(problems, fmt.Sprintf("panel %q has no query", p.Title))
			}
			if p.Datasource == nil || p.Datasource.UID != "prometheus" {
				problems = append(problems, fmt.Sprintf("panel %q does not use the provisioned data source (uid prometheus)", p.Title))
			}
			for _, tg := range p.Targets {
				queries++
				problems = append(problems, checkExpr(known, fmt.Sprintf("panel %q", p.Title), tg.Expr)...)
			}
		}
	}
	walk(dash.Panels)
	for _, p := range problems {
		t.Error(p)
	}
	if queries < 10 || rows == 0 {
		t.Errorf("dashboard has %d queries in %d rows: is hookline.json the plain model with top-level panels?", queries, rows)
	}
}

// Every alert rule's expression, and every input series of rules_test.yml, names only series
// that exist, so the promtool unit tests exercise the real names.
func TestRulesUseRegisteredMetrics(t *testing.T) {
	known := knownSeries(t)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(read(t, "deployments/prometheus/rules.yml"), &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			for _, p := range checkExpr(known, "alert "+r.Alert, r.Expr) {
				t.Error(p)
			}
		}
	}
	// Issue 5: failure ratio, backlog growing, endpoint disabled, events but no deliveries,
	// a service down.
	for _, want := range []string{"HooklineDeliveryFailureRatioHigh", "HooklineConsumerBacklogGrowing",
		"HooklineEndpointDisabled", "HooklineEventsButNoDeliveries", "HooklineServiceDown"} {
		if !alerts[want] {
			t.Errorf("rules.yml has no alert %s", want)
		}
	}

	var tests struct {
		Tests []struct {
			Name        string `yaml:"name"`
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(read(t, "deployments/prometheus/rules_test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, in := range tc.InputSeries {
			for _, p := range checkExpr(known, fmt.Sprintf("rules_test %q", tc.Name), in.Series) {
				t.Error(p)
			}
		}
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var missing []string
	for a := range alerts {
		if !firing[a] || !quiet[a] {
			missing = append(missing, fmt.Sprintf("%s (firing %v, quiet %v)", a, firing[a], quiet[a]))
		}
	}
	sort.Strings(missing)
	if missing != nil {
		t.Errorf("rules_test.yml lacks a firing or a quiet case for: %s", strings.Join(missing, ", "))
	}
}
