package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/loadgen"
)

// serve runs the load test in steps: every count up to s.mustRun (the
// issue's 300 cameras), then on while under the bar; and once more at
// s.tmpfsAt with the data on tmpfs, to show what fsync costs.
func (b *bench) serve(ctx context.Context) (string, error) {
	load0, _ := perf.ReadLoad()
	progress("making the %s load clip with ffmpeg", b.s.loadClip.Name())
	c, err := perf.MakeClip(ctx, perf.CacheDir(), b.s.loadClip)
	if err != nil {
		return "", err
	}
	clip, err := loadgen.LoadClip(c.MKV)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(b.work, "serve")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := loadgen.Config{Duration: b.s.loadDuration, Warmup: b.s.warmup, Clip: clip}
	report := func(r loadgen.Result) {
		progress("serve, %d streams: %d/%d persisted, %d errors, server %.0f%% of a core, %.0f MiB, p99 %s ms (warm-up p99 %s ms)",
			r.Streams, r.FragmentsPersisted, r.FragmentsSent, r.Errors, 100*r.ServerCores(), serverMiB(r), perf.Millis(r.Latency.P99), perf.Millis(r.WarmupLatency.P99))
	}
	var first, rest []int
	for _, n := range b.s.steps {
		if n <= b.s.mustRun {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	fresh := loadgen.FreshServers(b.kvsgo, dir, nil)
	results, err := loadgen.Steps(ctx, base, first, b.s.limit, true, fresh, report)
	if err != nil {
		return "", err
	}
	if len(results) > 0 && !loadgen.Over(results[len(results)-1], b.s.limit) && len(rest) > 0 {
		more, err := loadgen.Steps(ctx, base, rest, b.s.limit, false, fresh, report)
		if err != nil {
			return "", err
		}
		results = append(results, more...)
	}
	var tmpfs []loadgen.Result
	if b.s.tmpfsAt > 0 && perf.FSType("/dev/shm") == "tmpfs" {
		shm, err := os.MkdirTemp("/dev/shm", "kvsgo-bench-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(shm)
		if tmpfs, err = loadgen.Steps(ctx, base, []int{b.s.tmpfsAt}, b.s.limit, true, loadgen.FreshServers(b.kvsgo, shm, nil), report); err != nil {
			return "", err
		}
	}
	load1, _ := perf.ReadLoad()

	var w strings.Builder
	w.WriteString(b.header(load0, load1))
	fmt.Fprintf(&w, "\nEach row: a fresh `kvsgo serve` (data on %s), N producers each streaming the %s clip (%s) for %s, one write per frame, "+
		"all starting within one second (as when every camera reconnects after a restart). The first %s after the last start is warm-up: its latency is shown apart, "+
		"and the server's CPU is measured after it, while every producer streams. PERSISTED latency runs from the bytes that end a fragment (the next Cluster) "+
		"being handed to the socket to its PERSISTED ack. Steps run up to %d streams whatever the latency, then on until p99 passes %s ms.\n\n",
		perf.FSType(dir), b.s.loadClip.Name(), clipDesc(clip), b.s.loadDuration, b.s.warmup, b.s.mustRun, perf.Millis(b.s.limit))
	w.WriteString(loadgen.Table(results))
	w.WriteString("\n" + loadgen.Verdict(results, b.s.limit) + "\n")
	if lw := loadgen.LagWarning(results); lw != "" {
		w.WriteString("\n" + lw + "\n")
	}
	if len(tmpfs) > 0 {
		fmt.Fprintf(&w, "\nThe same %d streams with the server's data on tmpfs, where fsync costs nothing. Under a steady load the difference is what fsync costs on this disk; "+
			"when the load changes between the runs (see the load averages) the tail is mostly the wait for CPU.\n\n", b.s.tmpfsAt)
		w.WriteString(loadgen.Table(tmpfs))
		if lw := loadgen.LagWarning(tmpfs); lw != "" {
			w.WriteString("\n" + lw + "\n")
		}
	}
	w.WriteString("\nTargets (issue 9): at 300 × 1 Mbit/s the server at most 25% of one core and 64 MiB peak RSS, PERSISTED p99 ≤ 100 ms; report where p99 passes 100 ms.\n")
	var samples []string
	for _, r := range append(results, tmpfs...) {
		for _, e := range r.ErrorSamples {
			samples = append(samples, fmt.Sprintf("- at %d streams: %s", r.Streams, e))
		}
	}
	if len(samples) > 0 {
		w.WriteString("\nErrors seen:\n\n" + strings.Join(samples, "\n") + "\n")
	}
	return w.String(), nil
}

func serverMiB(r loadgen.Result) float64 {
	if r.Server == nil {
		return 0
	}
	return float64(r.Server.PeakRSS) / (1 << 20)
}

func clipDesc(c *loadgen.Clip) string {
	return fmt.Sprintf("%dx%d, %.0f fps, %.2f Mbit/s measured, %s GOP", c.Track.Width, c.Track.Height, c.FPS(), c.Bitrate()/1e6, c.GOP)
}
