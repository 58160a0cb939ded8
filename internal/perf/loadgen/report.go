package loadgen

import (
	"fmt"
	"strings"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
)

// Table renders results as a Markdown table: one row per stream count.
func Table(results []Result) string {
	var b strings.Builder
	b.WriteString("| streams | fragments persisted | errors | server CPU (of one core) | server peak RSS | PERSISTED p50 / p95 / p99 / max (ms) | warm-up p99 / max (ms) | generator lag p99 (ms) | load average |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---|---|---:|---|\n")
	for _, r := range results {
		cpu, rss := "–", "–"
		if r.Server != nil {
			cpu = fmt.Sprintf("%.0f%% (%.1f s in %.0f s)", 100*r.ServerCores(), r.Server.CPU().Seconds(), r.Window.Seconds())
			rss = fmt.Sprintf("%.0f MiB", float64(r.Server.PeakRSS)/(1<<20))
		}
		warm := "–"
		if r.WarmupLatency.N > 0 {
			warm = perf.Millis(r.WarmupLatency.P99) + " / " + perf.Millis(r.WarmupLatency.Max)
		}
		fmt.Fprintf(&b, "| %d | %d / %d | %d | %s | %s | %s | %s | %s | %.2f |\n", r.Streams, r.FragmentsPersisted, r.FragmentsSent,
			r.Errors, cpu, rss, r.Latency, warm, perf.Millis(r.Lag.P99), r.Load.One)
	}
	return b.String()
}

// Verdict says where the p99 latency passed limit, in a sentence, and
// whether a later step held the bar again (the machine's load changed
// between the steps, so the crossing point is not to be trusted).
func Verdict(results []Result, limit time.Duration) string {
	if len(results) == 0 {
		return "No load test ran."
	}
	bar := fmt.Sprintf("The bar (p99 ≤ %s ms, nothing lost)", perf.Millis(limit))
	for i, r := range results {
		if !Over(r, limit) {
			continue
		}
		why := fmt.Sprintf("p99 %s ms", perf.Millis(r.Latency.P99))
		if r.Missing > 0 || r.Errors > 0 {
			why = fmt.Sprintf("%d fragments not persisted, %d errors, p99 %s ms", r.Missing, r.Errors, perf.Millis(r.Latency.P99))
		}
		var v string
		if i == 0 {
			v = fmt.Sprintf("%s is passed already at %d streams: %s.", bar, r.Streams, why)
		} else {
			v = fmt.Sprintf("%s holds up to %d streams and is passed at %d: %s.", bar, results[i-1].Streams, r.Streams, why)
		}
		var held []string
		for _, later := range results[i+1:] {
			if !Over(later, limit) {
				held = append(held, fmt.Sprint(later.Streams))
			}
		}
		if len(held) > 0 {
			v += fmt.Sprintf(" Yet it held again at %s streams: the machine's load changed between the steps, so this crossing point is not to be trusted; run it again on a quieter machine.", strings.Join(held, ", "))
		}
		return v
	}
	return fmt.Sprintf("%s holds at every step, up to %d streams.", bar, results[len(results)-1].Streams)
}

// LagWarning says when the generator itself fell behind, which makes the
// load lighter than asked for; empty when it kept up.
func LagWarning(results []Result) string {
	var behind []string
	for _, r := range results {
		if r.Lag.P99 > 20*time.Millisecond {
			behind = append(behind, fmt.Sprintf("%d streams (p99 %s ms)", r.Streams, perf.Millis(r.Lag.P99)))
		}
	}
	if len(behind) == 0 {
		return ""
	}
	return "The load generator wrote frames late at " + strings.Join(behind, ", ") +
		": the machine could not run it in time, so the server got less than the nominal load there."
}
