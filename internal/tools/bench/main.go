// Command bench measures what kvsgo costs, whole process, and writes the
// generated sections of docs/BENCHMARKS.md: kvsgo put against a real
// kvsgo serve for several clips and containers, the serve load test, and
// the Go micro-benchmarks beside the floor of a paced stream. Run it
// through scripts/bench; see docs/BENCHMARKS.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings say what to measure and how long; from the environment, as
// scripts/bench documents.
type settings struct {
	quick     bool
	runs      int
	only      map[string]bool
	benchtime string
	out       string

	clips        []perf.ClipSpec
	floorSeconds float64

	loadClip     perf.ClipSpec
	steps        []int
	mustRun      int // every step up to this count runs, whatever the bar
	loadDuration time.Duration
	warmup       time.Duration
	limit        time.Duration
	tmpfsAt      int // one more run at this count with the data on tmpfs; 0 for none
}

func fromEnv() (settings, error) {
	s := settings{
		quick:        os.Getenv("BENCH_QUICK") == "1",
		runs:         3,
		benchtime:    envOr("BENCHTIME", "1s"),
		out:          envOr("BENCH_OUT", "docs/BENCHMARKS.md"),
		only:         map[string]bool{"put": true, "serve": true, "micro": true},
		floorSeconds: 10,
		loadClip:     perf.ClipSpec{Width: 640, Height: 480, FPS: 30, Bitrate: 1_000_000, Seconds: 10},
		steps:        []int{50, 100, 200, 300, 400, 600, 800},
		mustRun:      300,
		loadDuration: 15 * time.Second,
		warmup:       4 * time.Second,
		limit:        100 * time.Millisecond,
		tmpfsAt:      300,
	}
	secs := 20
	if s.quick {
		s.runs, secs, s.floorSeconds = 1, 8, 8
		s.steps, s.loadDuration, s.warmup, s.tmpfsAt = []int{50, 300}, 12*time.Second, 3*time.Second, 0
		s.benchtime = envOr("BENCHTIME", "200ms")
	}
	s.clips = []perf.ClipSpec{
		{Width: 854, Height: 480, FPS: 30, Bitrate: 1_000_000, Seconds: secs},
		{Width: 1920, Height: 1080, FPS: 30, Bitrate: 4_000_000, Seconds: secs},
	}
	if v := os.Getenv("BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("BENCH_RUNS=%q: give a number of runs, at least 1", v)
		}
		s.runs = n
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		s.only = map[string]bool{}
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if p != "put" && p != "serve" && p != "micro" {
				return s, fmt.Errorf("BENCH_ONLY=%q: give put, serve and/or micro, separated by commas", v)
			}
			s.only[p] = true
		}
	}
	return s, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context) error {
	s, err := fromEnv()
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(s.out)
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.out, err)
	}
	// Check the markers before spending a quarter of an hour.
	for _, name := range []string{"put", "serve", "micro"} {
		if s.only[name] {
			if _, err := replaceSection(doc, name, ""); err != nil {
				return err
			}
		}
	}
	work, err := os.MkdirTemp("", "kvsgo-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	began := time.Now()
	env := &bench{s: s, work: work, machine: perf.DescribeMachine(), commit: commit(ctx)}
	sections := map[string]string{}
	if s.only["put"] || s.only["serve"] {
		progress("building kvsgo and pacefloor")
		if env.kvsgo, err = perf.BuildKvsgo(ctx, ".", work); err != nil {
			return err
		}
		if env.camera, err = perf.BuildKvsgo(ctx, ".", work, "camera"); err != nil {
			return err
		}
	}
	if s.only["put"] {
		if sections["put"], err = env.put(ctx); err != nil {
			return err
		}
	}
	if s.only["serve"] {
		if sections["serve"], err = env.serve(ctx); err != nil {
			return err
		}
	}
	if s.only["micro"] {
		if sections["micro"], err = env.micro(ctx); err != nil {
			return err
		}
	}
	for name, body := range sections {
		if doc, err = replaceSection(doc, name, body); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.out, doc, 0o644); err != nil {
		return err
	}
	progress("wrote %s in %s", s.out, time.Since(began).Round(time.Second))
	return nil
}

// bench is one run of the harness.
type bench struct {
	s       settings
	work    string
	kvsgo   string
	camera  string // the camera build (put, run and get only)
	machine perf.Machine
	commit  string
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// header is the first lines of a generated section: when, where, under
// what load.
func (b *bench) header(load0, load1 perf.Load) string {
	h := fmt.Sprintf("Measured %s at commit %s on %s. Load average (1, 5, 15 min) %s before, %s after: the machine is shared with other engineers' builds and tests, so compare ratios more than absolutes.",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), b.commit, b.machine, load0, load1)
	if l := max(load0.One, load1.One); l > float64(b.machine.Cores) {
		h += fmt.Sprintf(" The load (%.1f) exceeded the %d cores: what was measured waited for CPU, so its tail latencies say as much about the machine as about kvsgo.", l, b.machine.Cores)
	}
	return h + "\n"
}

func commit(ctx context.Context) string {
	out, err := commandOutput(ctx, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	if dirty, _ := commandOutput(ctx, "git", "status", "--porcelain", "--untracked-files=no"); strings.TrimSpace(dirty) != "" {
		return strings.TrimSpace(out) + " (with uncommitted changes)"
	}
	return strings.TrimSpace(out)
}
