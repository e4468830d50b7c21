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

// target is one of issue 6's goals.
type target struct {
	scenario, variant, metric, label string
	limit                            float64
	atLeast                          bool
}

var targets = []target{
	{"nats", "", "deliveries_per_s", "NATS saturation ≥ 10,000 deliveries/s (stretch 15,000)", 10000, true},
	{"latency", "5000/s", "e2e_p50_ms", "5,000/s publish-to-receipt p50 ≤ 2 ms", 2, false},
	{"latency", "5000/s", "e2e_p99_ms", "5,000/s publish-to-receipt p99 ≤ 10 ms", 10, false},
	{"latency", "1000/s", "e2e_p50_ms", "1,000/s publish-to-receipt p50 ≤ 1 ms", 1, false},
	{"latency", "1000/s", "e2e_p99_ms", "1,000/s publish-to-receipt p99 ≤ 5 ms", 5, false},
	{"latency-http", "5000/s", "reply_p50_ms", "ingress reply at 5,000/s p50 ≤ 0.5 ms", 0.5, false},
	{"latency-http", "5000/s", "reply_p99_ms", "ingress reply at 5,000/s p99 ≤ 3 ms", 3, false},
	{"hol", "ratio", "healthy_ratio", "head-of-line healthy ratio ≥ 0.9", 0.9, true},
	{"drain", "", "drain_per_s", "drain of the backlog ≥ 10,000/s", 10000, true},
	{"drain", "", "max_peak_rss_mib", "drain: no process above 512 MiB RSS", 512, false},
}

func (b *bench) write(meta map[string]any, rs []runResult, sum []summary) error {
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	date := time.Now().UTC().Format("2006-01-02")
	base := filepath.Join(b.out, date)
	raw, err := json.MarshalIndent(map[string]any{"meta": meta, "summary": sum, "runs": rs}, "", " ")
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
	md.WriteString("## Targets (issue 6)\n\n| target | median | min–max | met |\n|---|---:|---:|:---:|\n")
	for _, t := range targets {
		s, ok := find(sum, t.scenario, t.variant, t.metric)
		if !ok {
			continue
		}
		met := s.Median <= t.limit
		if t.atLeast {
			met = s.Median >= t.limit
		}
		mark := "yes"
		if !met {
			mark = fmt.Sprintf("**no** (%+.0f%%)", 100*(s.Median-t.limit)/t.limit)
		}
		fmt.Fprintf(&md, "| %s | %s | %s–%s | %s |\n", t.label, num(s.Median), num(s.Min), num(s.Max), mark)
	}
	md.WriteString("\n## All figures\n\n| scenario | variant | metric | median | min–max |\n|---|---|---|---:|---:|\n")
	for _, s := range sum {
		if strings.HasPrefix(s.Metric, "publish_errors") && s.Max == 0 {
			continue
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s–%s |\n", s.Scenario, s.Variant, s.Metric, num(s.Median), num(s.Min), num(s.Max))
	}
	fmt.Fprintf(&md, "\n## Charts (median run of each variant)\n\n![throughput over time](%s-throughput.svg)\n\n![latency over time](%s-latency.svg)\n", date, date)
	settings, _ := json.MarshalIndent(meta["settings"], "", "  ")
	flags, _ := json.MarshalIndent(meta["flags"], "", "  ")
	fmt.Fprintf(&md, "\n## Settings\n\n```json\n%s\n```\n\nFlags:\n\n```json\n%s\n```\n", settings, flags)
	if err := os.WriteFile(base+".md", []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nreport: %s.json, %s.md\n", base, base)
	return nil
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
		if r.Scenario != "latency" && r.Scenario != "latency-http" {
			tp = append(tp, l)
		}
		if r.Latency != nil && (r.Scenario == "latency" || r.Scenario == "latency-http") {
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
