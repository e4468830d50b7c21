package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// summary is the median and min–max of one metric over the runs of a scenario variant.
type summary struct {
	Scenario string  `json:"scenario"`
	Variant  string  `json:"variant,omitempty"`
	Metric   string  `json:"metric"`
	Median   float64 `json:"median"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	Runs     int     `json:"runs"`
}

func flat(r runResult) map[string]float64 {
	m := map[string]float64{}
	for k, v := range r.Metrics {
		m[k] = v
	}
	if p := r.Latency; p != nil {
		m["e2e_p50_ms"], m["e2e_p90_ms"], m["e2e_p99_ms"], m["e2e_max_ms"] = p.P50, p.P90, p.P99, p.Max
	}
	if p := r.Reply; p != nil {
		m["reply_p50_ms"], m["reply_p90_ms"], m["reply_p99_ms"], m["reply_max_ms"] = p.P50, p.P90, p.P99, p.Max
	}
	for k, v := range r.PeakRSS {
		m["peak_rss_mib_"+k] = v
	}
	return m
}

func summarize(rs []runResult) []summary {
	type key struct{ s, v, m string }
	vals := map[key][]float64{}
	var order []key
	for _, r := range rs {
		f := flat(r)
		names := make([]string, 0, len(f))
		for k := range f {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, n := range names {
			k := key{r.Scenario, r.Variant, n}
			if _, ok := vals[k]; !ok {
				order = append(order, k)
			}
			vals[k] = append(vals[k], f[n])
		}
	}
	var out []summary
	for _, k := range order {
		v := slices.Clone(vals[k])
		slices.Sort(v)
		out = append(out, summary{Scenario: k.s, Variant: k.v, Metric: k.m, Median: median(v), Min: v[0], Max: v[len(v)-1], Runs: len(v)})
	}
	// Head-of-line ratio: healthy endpoints' rate with 10 hung over the same endpoints' rate
	// when all are healthy (medians).
	h, okH := find(out, "hol", "10-hung", "healthy90_per_s")
	a, okA := find(out, "hol", "all-healthy", "healthy90_per_s")
	if okH && okA && a.Median > 0 {
		out = append(out, summary{Scenario: "hol", Variant: "ratio", Metric: "healthy_ratio", Median: h.Median / a.Median,
			Min: h.Min / a.Max, Max: h.Max / a.Min, Runs: h.Runs})
	}
	for _, r := range relativeToFloor(out) {
		out = append(out, summary{Scenario: r.Scenario, Variant: r.Variant, Metric: r.Metric + floorSuffix,
			Median: r.Ratio, Min: r.RatioMin, Max: r.RatioMax, Runs: r.Runs})
	}
	return out
}

const floorSuffix = "_vs_floor"

// relative is one Hookline figure over the floor's figure of the same run of the benchmark:
// deliveries/s as a fraction of the floor's (1 = as fast as the floor), latencies as a multiple
// of the floor's at the same rate (1 = as quick as the floor).
type relative struct {
	Scenario string  `json:"scenario"`
	Variant  string  `json:"variant,omitempty"`
	Metric   string  `json:"metric"`
	Hookline float64 `json:"hookline"`
	Floor    float64 `json:"floor"`
	Ratio    float64 `json:"ratio"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	Runs     int     `json:"runs"`
}

// relativeToFloor relates the saturation rates of nats, http and drain to the floor's
// saturation rate, and the latency scenario's percentiles to the floor's at the same rate.
func relativeToFloor(sum []summary) []relative {
	sat, okSat := find(sum, "floor", "", "deliveries_per_s")
	var out []relative
	for _, s := range sum {
		var f summary
		var ok bool
		switch {
		case s.Scenario == "nats" && s.Variant == "" && s.Metric == "deliveries_per_s",
			s.Scenario == "http" && s.Variant == "" && (s.Metric == "deliveries_per_s" || s.Metric == "accepted_per_s"),
			s.Scenario == "drain" && s.Variant == "" && s.Metric == "drain_per_s":
			f, ok = sat, okSat
		case s.Scenario == "latency" && (s.Metric == "e2e_p50_ms" || s.Metric == "e2e_p90_ms" || s.Metric == "e2e_p99_ms"):
			f, ok = find(sum, "floor", s.Variant, s.Metric)
		}
		if !ok || f.Median <= 0 || f.Min <= 0 {
			continue
		}
		out = append(out, relative{Scenario: s.Scenario, Variant: s.Variant, Metric: s.Metric, Hookline: s.Median,
			Floor: f.Median, Ratio: s.Median / f.Median, RatioMin: s.Min / f.Max, RatioMax: s.Max / f.Min, Runs: s.Runs})
	}
	return out
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func find(s []summary, scenario, variant, metric string) (summary, bool) {
	for _, x := range s {
		if x.Scenario == scenario && x.Variant == variant && x.Metric == metric {
			return x, true
		}
	}
	return summary{}, false
}

// target is one of the goals of issue 9 (item 5).
type target struct {
	scenario, variant, metric, label string
	limit                            float64
	atLeast                          bool
	worst                            bool    // every run must meet it (else the median)
	stretch                          float64 // a further goal, noted when met
}

func (b *bench) targets() []target {
	drain := "backlog drain of 200,000 ≥ 12,000 deliveries/s"
	if b.drainEvents != 200_000 {
		drain += fmt.Sprintf(" (this run: %d)", b.drainEvents)
	}
	crash := "crash: 20,000 owed, all delivered within 30 s of restart"
	if b.crashEvents != 20_000 {
		crash += fmt.Sprintf(" (this run: %d)", b.crashEvents)
	}
	return []target{
		{scenario: "nats", metric: "deliveries_per_s", label: "NATS saturation ≥ 10,000 deliveries/s (stretch 15,000)", limit: 10000, atLeast: true, stretch: 15000},
		{scenario: "nats", metric: "deliveries_per_s" + floorSuffix, label: "NATS saturation ≥ 0.8 × the floor", limit: 0.8, atLeast: true},
		{scenario: "http", metric: "accepted_per_s", label: "POST /events saturation ≥ 8,000 accepted/s", limit: 8000, atLeast: true},
		{scenario: "http", metric: "deliveries_per_s", label: "POST /events saturation ≥ 8,000 delivered/s", limit: 8000, atLeast: true},
		{scenario: "latency", variant: "1000/s", metric: "e2e_p50_ms", label: "1,000/s publish-to-receipt p50 ≤ 2 ms", limit: 2},
		{scenario: "latency", variant: "1000/s", metric: "e2e_p99_ms", label: "1,000/s publish-to-receipt p99 ≤ 10 ms", limit: 10},
		{scenario: "latency", variant: "5000/s", metric: "e2e_p50_ms", label: "5,000/s publish-to-receipt p50 ≤ 5 ms", limit: 5},
		{scenario: "latency", variant: "5000/s", metric: "e2e_p99_ms", label: "5,000/s publish-to-receipt p99 ≤ 25 ms", limit: 25},
		{scenario: "latency-http", variant: "5000/s", metric: "reply_p50_ms", label: "ingress reply at 5,000/s p50 ≤ 1 ms", limit: 1},
		{scenario: "latency-http", variant: "5000/s", metric: "reply_p99_ms", label: "ingress reply at 5,000/s p99 ≤ 5 ms", limit: 5},
		{scenario: "drain", metric: "drain_per_s", label: drain, limit: 12000, atLeast: true},
		{scenario: "drain", metric: "max_peak_rss_mib", label: "drain: every process ≤ 512 MiB RSS (every run)", limit: 512, worst: true},
		{scenario: "crash", metric: "recovery_s", label: crash, limit: 30},
		{scenario: "crash", metric: "lost", label: "crash: 0 lost (every run)", limit: 0, worst: true},
		{scenario: "hol", variant: "ratio", metric: "healthy_ratio", label: "head-of-line healthy ratio ≥ 0.9 (issue 6)", limit: 0.9, atLeast: true},
		{scenario: "ratelimit", metric: "limited_per_s", label: "endpoint limited to 50/s gets ≥ 45/s (issue 12)", limit: 45, atLeast: true},
		{scenario: "ratelimit", metric: "limited_per_s", label: "endpoint limited to 50/s gets ≤ 55/s (issue 12)", limit: 55},
	}
}

// met says whether s meets t, and by how much it misses.
func (t target) met(s summary) string {
	v := s.Median
	if t.worst {
		v = s.Max
		if t.atLeast {
			v = s.Min
		}
	}
	ok := v <= t.limit
	if t.atLeast {
		ok = v >= t.limit
	}
	switch {
	case ok && t.stretch > 0 && v >= t.stretch:
		return "yes, stretch too"
	case ok:
		return "yes"
	case t.limit == 0:
		return fmt.Sprintf("**no** (%s)", num(v))
	default:
		return fmt.Sprintf("**no** (%+.0f%%)", 100*(v-t.limit)/t.limit)
	}
}

func (b *bench) write(meta map[string]any, rs []runResult, sum []summary) error {
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	date := time.Now().UTC().Format("2006-01-02")
	base := filepath.Join(b.out, date)
	if b.name != "" {
		base = filepath.Join(b.out, b.name)
	}
	rel := relativeToFloor(sum)
	raw, err := json.MarshalIndent(map[string]any{"meta": meta, "summary": sum, "relative_to_floor": rel, "runs": rs}, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", raw, 0o644); err != nil {
		return err
	}
	tp, lat := b.charts(rs)
	if err := os.WriteFile(base+"-throughput.svg", []byte(tp), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+"-latency.svg", []byte(lat), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Hookline benchmark, %s\n\n", date)
	fmt.Fprintf(&md, "Machine: %v cores (GOMAXPROCS %v), %v, %v. Mode: %v. Runs: %d of %s each (first %s left out), median and min–max. "+
		"Load generator, receivers and NATS run on the same cores. Reproduce with `make bench` (flags via `BENCH_ARGS`).\n\n",
		meta["cores"], meta["gomaxprocs"], meta["go"], meta["os_arch"], meta["mode"], b.runs, b.duration, b.warmup)
	if pg, ok := meta["postgres"].(map[string]string); ok {
		fmt.Fprintf(&md, "PostgreSQL: %s; synchronous_commit=%s, fsync=%s.\n\n", firstWords(pg["version"], 2), pg["synchronous_commit"], pg["fsync"])
	}
	var targets strings.Builder
	for _, t := range b.targets() {
		s, ok := find(sum, t.scenario, t.variant, t.metric)
		if !ok {
			continue
		}
		fmt.Fprintf(&targets, "| %s | %s | %s–%s | %s |\n", t.label, num(s.Median), num(s.Min), num(s.Max), t.met(s))
	}
	if targets.Len() > 0 {
		md.WriteString("## Targets (issue 9)\n\n| target | median | min–max | met |\n|---|---:|---:|:---:|\n" + targets.String())
	}
	clusterTable(&md, meta, sum)
	if len(rel) > 0 {
		md.WriteString("\n## Relative to the floor\n\n" +
			"The floor is a minimal pass-through with Hookline's durability, run in the same benchmark: " + fmt.Sprint(meta["floor"]) + ". " +
			"Rates are a fraction of the floor's saturation rate (1 = as fast); latencies a multiple of the floor's at the same rate (1 = as quick). " +
			"Medians; the ratio's range is Hookline's min–max over the floor's max–min.\n\n" +
			"| scenario | variant | metric | Hookline | floor | ratio | range |\n|---|---|---|---:|---:|---:|---:|\n")
		for _, r := range rel {
			fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s | %s–%s |\n", r.Scenario, r.Variant, r.Metric, num(r.Hookline), num(r.Floor),
				num(r.Ratio), num(r.RatioMin), num(r.RatioMax))
		}
	}
	crashTable(&md, rs, sum)
	md.WriteString("\n## All figures\n\n| scenario | variant | metric | median | min–max |\n|---|---|---|---:|---:|\n")
	for _, s := range sum {
		if strings.HasPrefix(s.Metric, "publish_errors") && s.Max == 0 {
			continue
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s–%s |\n", s.Scenario, s.Variant, s.Metric, num(s.Median), num(s.Min), num(s.Max))
	}
	if f, ok := meta["failed_runs"].([]string); ok {
		md.WriteString("\n## Failed runs (left out of the figures)\n\n")
		for _, l := range f {
			fmt.Fprintf(&md, "- %s\n", l)
		}
	}
	fmt.Fprintf(&md, "\n## Charts (median run of each variant)\n\n![throughput over time](%s-throughput.svg)\n\n![latency over time](%s-latency.svg)\n",
		filepath.Base(base), filepath.Base(base))
	settings, _ := json.MarshalIndent(meta["settings"], "", "  ")
	flags, _ := json.MarshalIndent(meta["flags"], "", "  ")
	fmt.Fprintf(&md, "\n## Settings\n\n```json\n%s\n```\n\nFlags:\n\n```json\n%s\n```\n", settings, flags)
	if err := os.WriteFile(base+".md", []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s.json, %s.md\n", base, base)
	return nil
}

// clusterTable sets R3 against R1 (the cluster scenario): medians and the ratio R3 / R1.
func clusterTable(md *strings.Builder, meta map[string]any, sum []summary) {
	rows := []struct{ variant, metric, label string }{
		{"saturation", "deliveries_per_s", "saturation, deliveries/s"},
		{"saturation", "e2e_p50_ms", "saturation, publish-to-receipt p50, ms"},
		{"1000/s", "deliveries_per_s", "1,000/s offered, deliveries/s"},
		{"1000/s", "e2e_p50_ms", "1,000/s, publish-to-receipt p50, ms"},
		{"1000/s", "e2e_p90_ms", "1,000/s, publish-to-receipt p90, ms"},
		{"1000/s", "e2e_p99_ms", "1,000/s, publish-to-receipt p99, ms"},
		{"200/s", "deliveries_per_s", "200/s offered, deliveries/s"},
		{"200/s", "cpu_us_per_delivery", "200/s, CPU of the bench process per delivery, µs (services, NATS, generator, receivers)"},
		{"1000/s", "cpu_us_per_delivery", "1,000/s, CPU of the bench process per delivery, µs"},
		{"200/s", "e2e_p50_ms", "200/s, publish-to-receipt p50, ms"},
		{"200/s", "e2e_p99_ms", "200/s, publish-to-receipt p99, ms"},
		{"saturation", "machine_load1", "machine 1-min load at the end of the saturation runs"},
		{"1000/s", "machine_load1", "machine 1-min load at the end of the 1,000/s runs"},
		{"200/s", "machine_load1", "machine 1-min load at the end of the 200/s runs"},
	}
	var out strings.Builder
	for _, r := range rows {
		one, ok1 := find(sum, "cluster", "R1 "+r.variant, r.metric)
		three, ok3 := find(sum, "cluster", "R3 "+r.variant, r.metric)
		if !ok1 || !ok3 {
			continue
		}
		ratio := "–"
		if one.Median != 0 {
			ratio = num(three.Median / one.Median)
		}
		fmt.Fprintf(&out, "| %s | %s (%s–%s) | %s (%s–%s) | %s |\n", r.label, num(one.Median), num(one.Min), num(one.Max),
			num(three.Median), num(three.Min), num(three.Max), ratio)
	}
	if out.Len() == 0 {
		return
	}
	md.WriteString("## Replication: R3 on three nodes against R1 on one (issue 11)\n\n" + fmt.Sprint(meta["cluster"]) + ". Medians (min–max).\n\n" +
		"| | R1, one node | R3, three nodes | R3 / R1 |\n|---|---:|---:|---:|\n" + out.String() + "\n")
}

// crashTable lists each run of the crash scenario and the medians.
func crashTable(md *strings.Builder, rs []runResult, sum []summary) {
	cols := []struct{ metric, head string }{{"owed", "owed"}, {"received_at_kill", "received at kill"},
		{"ready_s", "restart → ready, s"}, {"recovery_s", "restart → all delivered, s"}, {"last_new_s", "restart → last new, s"}, {"lost", "lost"},
		{"duplicates", "duplicates (webhook-id seen before)"}, {"duplicate_events", "events delivered under two webhook-ids"},
		{"queues_empty_s", "restart → queues empty, s"}}
	var rows []runResult
	for _, r := range rs {
		if r.Scenario == "crash" {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	md.WriteString("\n## Crash and restart\n\nThe all-in-one binary SIGKILLed once a quarter of the events were received, restarted at once " +
		"on the same data dir and database. Times from the restart (process start); \"all delivered\" is the deadline when some were lost, " +
		"\"last new\" the last first receipt of an event either way.\n\n| run |")
	for _, c := range cols {
		md.WriteString(" " + c.head + " |")
	}
	md.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, r := range rows {
		fmt.Fprintf(md, "| %d |", r.Run)
		for _, c := range cols {
			if v, ok := r.Metrics[c.metric]; ok {
				md.WriteString(" " + num(v) + " |")
			} else {
				md.WriteString(" – |")
			}
		}
		md.WriteString("\n")
	}
	md.WriteString("| median |")
	for _, c := range cols {
		if s, ok := find(sum, "crash", "", c.metric); ok {
			md.WriteString(" " + num(s.Median) + " |")
		} else {
			md.WriteString(" – |")
		}
	}
	md.WriteString("\n")
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// medianRun picks, per scenario variant, the run whose primary metric is the median.
func medianRuns(rs []runResult, metric func(runResult) float64) []runResult {
	groups := map[string][]runResult{}
	var order []string
	for _, r := range rs {
		k := r.Scenario + " " + r.Variant
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []runResult
	for _, k := range order {
		g := slices.Clone(groups[k])
		slices.SortFunc(g, func(a, b runResult) int {
			return int(math.Copysign(1, metric(a)-metric(b)))
		})
		out = append(out, g[len(g)/2])
	}
	return out
}

type line struct {
	name string
	pts  [][2]float64
}

func (b *bench) charts(rs []runResult) (string, string) {
	var tp, lat []line
	for _, r := range medianRuns(rs, func(r runResult) float64 { return r.Metrics["deliveries_per_s"] + r.Metrics["drain_per_s"] }) {
		name := strings.TrimSpace(r.Scenario + " " + r.Variant)
		var l line
		l.name = name
		for _, p := range r.Series {
			l.pts = append(l.pts, [2]float64{float64(p.T), p.Rate})
		}
		atRate := r.Scenario == "latency" || r.Scenario == "latency-http" || (r.Scenario == "floor" && r.Variant != "")
		if !atRate && len(l.pts) > 0 {
			tp = append(tp, l)
		}
		if r.Latency != nil && atRate {
			p50, p99 := line{name: name + " p50"}, line{name: name + " p99"}
			for _, p := range r.Series {
				if p.P99 > 0 {
					p50.pts = append(p50.pts, [2]float64{float64(p.T), p.P50})
					p99.pts = append(p99.pts, [2]float64{float64(p.T), p.P99})
				}
			}
			lat = append(lat, p50, p99)
		}
	}
	return svgChart("Deliveries per second over time (median run)", "s", "deliveries/s", tp),
		svgChart("Publish-to-receipt latency per second, p50 and p99 (median run)", "s", "ms", lat)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// svgChart draws lines on linear axes, by hand.
func svgChart(title, xUnit, yUnit string, lines []line) string {
	const W, H, L, R, T, B = 900.0, 420.0, 70.0, 230.0, 40.0, 45.0
	pw, ph := W-L-R, H-T-B
	var xmax, ymax float64 = 1, 0
	for _, l := range lines {
		for _, p := range l.pts {
			xmax, ymax = max(xmax, p[0]), max(ymax, p[1])
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax = niceCeil(ymax * 1.05)
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="22" font-size="15">%s</text>`+"\n", L, esc(title))
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		y := T + ph - ph*float64(i)/5
		fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			L, L+pw, y, y, L-6, y+4, num(v))
	}
	for i := 0; i <= 6; i++ {
		v := xmax * float64(i) / 6
		x := L + pw*float64(i)/6
		fmt.Fprintf(&s, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0f</text>`+"\n", x, T+ph+18, v)
	}
	fmt.Fprintf(&s, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text><text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`+"\n",
		L+pw/2, H-6, xUnit, T+ph/2, T+ph/2, yUnit)
	fmt.Fprintf(&s, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", L, T, pw, ph)
	for i, l := range lines {
		c := palette[i%len(palette)]
		var pts []string
		for _, p := range l.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", L+pw*p[0]/xmax, T+ph-ph*min(p[1], ymax)/ymax))
		}
		dash := ""
		if strings.HasSuffix(l.name, "p50") {
			dash = ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", c, dash, strings.Join(pts, " "))
		y := T + 10 + float64(i)*17
		fmt.Fprintf(&s, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="3"%s/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			L+pw+12, L+pw+32, y, y, c, dash, L+pw+38, y+4, esc(l.name))
	}
	s.WriteString("</svg>\n")
	return s.String()
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
