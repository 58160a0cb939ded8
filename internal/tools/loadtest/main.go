// Command loadtest puts N paced PutMedia producers on a kvsgo serve (one it
// starts itself, or --endpoint) and reports fragments persisted, errors,
// PERSISTED latency and the server's CPU and peak memory. Run it through
// scripts/loadtest; see docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

type options struct {
	streams   int
	steps     string
	duration  time.Duration
	ramp      time.Duration
	warmup    time.Duration
	clip      string
	width     int
	height    int
	fps       int
	bitrate   int
	endpoint  string
	pid       int
	kvsgo     string
	dataDir   string
	serveArgs string
	limit     time.Duration
	keepGoing bool
	jsonOut   string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: scripts/loadtest [flags]

N concurrent paced PutMedia producers (one write per frame, a looped clip)
against a fresh kvsgo serve on 127.0.0.1, or --endpoint. Reports fragments
persisted, errors, the delay from a fragment's end to its PERSISTED ack, and
the server's CPU and peak RSS from /proc.

  scripts/loadtest -n 300 --duration 30s
  scripts/loadtest --steps 50,100,200,300,400,600,800      # where does p99 pass 100 ms?
  scripts/loadtest --endpoint http://127.0.0.1:4567 --pid $(pgrep -n kvsgo) -n 100

Flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.streams, "n", 100, "concurrent producers (streams)")
	fs.StringVar(&o.steps, "steps", "", "comma-separated stream counts to run in turn, each against a fresh server, stopping once p99 passes --limit (e.g. 50,100,200,300,400,600,800)")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long each producer streams")
	fs.DurationVar(&o.ramp, "ramp", 0, "spread the producers' starts over this long (default: one GOP, as when every camera reconnects after a restart)")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "after the last start, left out of the steady-state figures and reported on its own")
	fs.StringVar(&o.clip, "clip", "", "Matroska H.264 clip to loop (default: made with ffmpeg from --size, --fps, --bitrate, 1 s GOP)")
	size := fs.String("size", "640x480", "picture size of the made clip")
	fs.IntVar(&o.fps, "fps", 30, "frame rate of the made clip")
	fs.IntVar(&o.bitrate, "bitrate", 1_000_000, "bits per second of each stream (the made clip)")
	fs.StringVar(&o.endpoint, "endpoint", "", "control-plane URL of a server already running on this machine's loopback (default: start kvsgo serve)")
	fs.IntVar(&o.pid, "pid", 0, "with --endpoint: the server's process ID, to read its CPU and memory from /proc")
	fs.StringVar(&o.kvsgo, "kvsgo", "", "kvsgo binary to serve with (default: built from this checkout)")
	fs.StringVar(&o.dataDir, "data-dir", "", "where the started servers keep their data, one fresh directory per run (default: the system's temporary directory); removed afterwards")
	fs.StringVar(&o.serveArgs, "serve-args", "", "more arguments for kvsgo serve, e.g. \"--log-level warn\"")
	fs.DurationVar(&o.limit, "limit", 100*time.Millisecond, "the p99 bar for --steps")
	fs.BoolVar(&o.keepGoing, "keep-going", false, "with --steps: run every step, even past the bar")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only; see --help)", fs.Args())
	}
	if _, err := fmt.Sscanf(*size, "%dx%d", &o.width, &o.height); err != nil || o.width <= 0 || o.height <= 0 {
		return fmt.Errorf("--size %q: use WIDTHxHEIGHT, e.g. 640x480", *size)
	}
	ns := []int{o.streams}
	if o.steps != "" {
		var err error
		if ns, err = parseSteps(o.steps); err != nil {
			return err
		}
	}
	if o.endpoint != "" && len(ns) > 1 {
		fmt.Fprintln(stderr, "loadtest: note: with --endpoint every step runs against the same server; its peak RSS is over its whole life")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	results, err := loadTest(ctx, o, ns, log, func(r loadgen.Result) {
		fmt.Fprintf(stderr, "loadtest: %d streams: %d/%d persisted, %d errors, p99 %s ms\n", r.Streams, r.FragmentsPersisted, r.FragmentsSent, r.Errors, perf.Millis(r.Latency.P99))
	})
	if len(results) > 0 {
		m := perf.DescribeMachine()
		fmt.Fprintf(stdout, "\n%s clip, %s per producer; machine: %s\n\n", results[0].Clip, o.duration, m)
		fmt.Fprint(stdout, loadgen.Table(results))
		fmt.Fprintln(stdout)
		if len(ns) > 1 {
			fmt.Fprintln(stdout, loadgen.Verdict(results, o.limit))
		}
		if w := loadgen.LagWarning(results); w != "" {
			fmt.Fprintln(stdout, w)
		}
		for _, r := range results {
			for _, e := range r.ErrorSamples {
				fmt.Fprintf(stdout, "error at %d streams: %s\n", r.Streams, e)
			}
		}
		if o.jsonOut != "" {
			b, _ := json.MarshalIndent(results, "", "  ")
			if werr := os.WriteFile(o.jsonOut, b, 0o644); werr != nil {
				return werr
			}
		}
	}
	return err
}

func parseSteps(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--steps %q: give stream counts separated by commas, e.g. 50,100,200", s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// loadTest runs the steps, each against a fresh server unless --endpoint.
func loadTest(ctx context.Context, o options, ns []int, log *slog.Logger, report func(loadgen.Result)) ([]loadgen.Result, error) {
	work, err := os.MkdirTemp(o.dataDir, "kvsgo-loadtest-")
	if err != nil {
		return nil, fmt.Errorf("a directory for the servers' data: %w", err)
	}
	defer os.RemoveAll(work)
	clipPath := o.clip
	if clipPath == "" {
		log.Info("making the clip with ffmpeg (kept for next time)", "dir", perf.CacheDir())
		c, err := perf.MakeClip(ctx, perf.CacheDir(), perf.ClipSpec{Width: o.width, Height: o.height, FPS: o.fps, Bitrate: o.bitrate, Seconds: 10})
		if err != nil {
			return nil, err
		}
		clipPath = c.MKV
	}
	clip, err := loadgen.LoadClip(clipPath)
	if err != nil {
		return nil, err
	}
	target := func(context.Context) (loadgen.Target, error) {
		return loadgen.Target{Endpoint: o.endpoint, PID: o.pid, Stop: func() error { return nil }}, nil
	}
	if o.endpoint == "" {
		bin := o.kvsgo
		if bin == "" {
			log.Info("building kvsgo")
			if bin, err = perf.BuildKvsgo(ctx, ".", work); err != nil {
				return nil, err
			}
		}
		log.Info("servers keep their data on", "fs", perf.FSType(work), "dir", work)
		target = loadgen.FreshServers(bin, work, strings.Fields(o.serveArgs))
	}
	base := loadgen.Config{Duration: o.duration, Ramp: o.ramp, Warmup: o.warmup, Clip: clip, Logger: log}
	return loadgen.Steps(ctx, base, ns, o.limit, o.keepGoing || len(ns) == 1, target, report)
}
