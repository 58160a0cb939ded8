package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvsgo/kvsgo/internal/fleet"
	"github.com/kvsgo/kvsgo/kvs"
)

// The config's keys that are the whole run's, not one stream's.
var runGlobalKeys = []string{"metrics-addr", "log-level", "quiet"}

func runRun(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "run", "run --config FILE [--check]")
	path := fs.String("config", "", "the YAML file listing the streams (required); kvsgo re-reads it on SIGHUP and when it changes")
	check := fs.Bool("check", false, "check the file and exit: every mistake with its line, nothing started")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, mtime, err := loadFleet(env, *path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(env.stdout, "%s: %d streams, no mistakes\n", *path, len(cfg.Streams))
		return nil
	}
	quiet := cfg.Global["quiet"] == "true"
	var view *fleet.View
	if !quiet && isTerminal(env.stderr) {
		view = fleet.NewView(env.stderr, nil)
		env = &cliEnv{stdout: env.stdout, stderr: view}
	}
	log, err := newLogger(env, cmp(cfg.Global["log-level"], "info"))
	if err != nil {
		return err
	}
	ctx, stop := stopOnSignals(log, os.Exit, "what was not yet persisted is lost, except what is in a --buffer-dir")
	defer stop()
	sup := fleet.NewSupervisor(fleet.SupervisorConfig{Run: streamRunner(env), Logger: log})
	if addr := cfg.Global["metrics-addr"]; addr != "" {
		srv, err := serveFleetMetrics(addr, sup, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	viewCtx, stopView := context.WithCancel(ctx)
	viewDone := make(chan struct{})
	if view != nil {
		go func() { defer close(viewDone); view.Run(viewCtx, sup) }()
	} else {
		close(viewDone)
	}
	defer func() { stopView(); <-viewDone }()

	sup.Apply(cfg.Streams)
	log.Info(fmt.Sprintf("running %d streams from %s: SIGHUP or a change of the file reloads it", len(cfg.Streams), *path),
		"streams", streamNames(cfg.Streams))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Polling the file's time is cheap, and works for editors that
	// replace the file, where inotify would need care.
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	reload := func(why string) {
		next, t, err := loadFleet(env, *path)
		mtime = t // a broken file is reported once, not every poll
		if err != nil {
			log.Error("config not reloaded ("+why+"); the running streams go on as they were", "err", err)
			return
		}
		for _, k := range runGlobalKeys {
			if next.Global[k] != cfg.Global[k] {
				log.Warn(k + " changed: it applies at the next start of kvsgo run, not on reload")
			}
		}
		ch := sup.Apply(next.Streams)
		log.Info("config reloaded ("+why+")", "kept", ch.Kept, "restarted", ch.Restarted, "stopped", ch.Stopped, "started", ch.Started)
		next.Global = cfg.Global
		cfg = next
	}
	for {
		select {
		case <-ctx.Done():
			stopView()
			<-viewDone
			log.Info("stopping every stream: each delivers what it holds")
			if err := sup.Stop(); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "kvsgo run: %d streams stopped, everything delivered\n", len(cfg.Streams))
			return nil
		case <-hup:
			reload("SIGHUP")
		case <-poll.C:
			if fi, err := os.Stat(*path); err == nil && !fi.ModTime().Equal(mtime) {
				reload("the file changed")
			}
		}
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func streamNames(sts []fleet.Stream) []string {
	names := make([]string, len(sts))
	for i, s := range sts {
		names[i] = s.Name
	}
	return names
}

// fleetRules: a stream's keys are put's flags, and a stream is checked
// as put checks its command line (flags that go together, AWS IoT).
func fleetRules(env *cliEnv) fleet.Rules {
	return fleet.Rules{
		NewFlagSet: func() *flag.FlagSet {
			var f putFlags
			fs, _ := putFlagSet(env, &f)
			fs.SetOutput(io.Discard)
			return fs
		},
		Global: runGlobalKeys,
		Getenv: os.LookupEnv,
		Check: func(st fleet.Stream) error {
			_, err := streamFlags(env, st)
			return err
		},
	}
}

// loadFleet reads and parses the file.
func loadFleet(env *cliEnv, path string) (*fleet.Config, time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("--config: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fi.ModTime(), fmt.Errorf("--config: %w", err)
	}
	cfg, err := fleet.Parse(path, b, fleetRules(env))
	if err != nil {
		if n := strings.Count(err.Error(), "\n") + 1; n > 1 {
			return nil, fi.ModTime(), fmt.Errorf("%d mistakes in %s, nothing changed:\n%w", n, path, err)
		}
		return nil, fi.ModTime(), err
	}
	return cfg, fi.ModTime(), nil
}

// streamFlags makes one stream's put settings from its keys, through
// put's own flag set: any put flag works as a key.
func streamFlags(env *cliEnv, st fleet.Stream) (putFlags, error) {
	var f putFlags
	fs, finish := putFlagSet(env, &f)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range st.Settings {
		if err := fs.Set(s.Key, s.Value); err != nil {
			return f, fmt.Errorf("%s: %w", s.Key, err)
		}
	}
	if err := finish(); err != nil {
		return f, errors.New(strings.TrimPrefix(err.Error(), errUsage.Error()+": ")) // no command line here
	}
	if !slices.ContainsFunc(st.Settings, func(s fleet.Setting) bool { return s.Key == "give-up-after" }) {
		// Giving up would restart the stream and drop its buffer: unless
		// told otherwise, the producer retries for ever, keeping it.
		f.giveUp = 0
	}
	f.quiet = true     // the run's view shows every stream
	f.metricsAddr = "" // the run's /metrics has every stream
	return f, nil
}

// streamRunner runs one stream as kvsgo put would, its summary logged
// with its name.
func streamRunner(env *cliEnv) fleet.Runner {
	return func(ctx context.Context, st fleet.Stream, log *slog.Logger, started func(*kvs.Producer)) error {
		f, err := streamFlags(env, st)
		if err != nil {
			return err
		}
		f.iot.cfg.Logger = log
		senv := &cliEnv{stdout: logWriter{log}, stderr: env.stderr}
		return f.iot.explain(putStream(ctx, senv, log, f, started))
	}
}

// logWriter logs what put prints (its summary) as info lines.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.log.Info(strings.TrimPrefix(line, "kvsgo put: "))
	}
	return len(p), nil
}

// serveFleetMetrics serves /metrics (every stream's, labelled) and
// /healthz (which streams are not streaming) for a run.
func serveFleetMetrics(addr string, sup *fleet.Supervisor, log *slog.Logger) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), fleet.NewCollector(sup))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", fleet.Health(sup))
	return listenMetrics(addr, mux, log)
}
