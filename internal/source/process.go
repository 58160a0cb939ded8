package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// Process runs a program whose standard output carries video (Annex-B
// H.264/H.265, Matroska or MPEG-TS) and supervises it: its standard error
// goes to the log under the source's name, it is restarted with back-off
// when it exits, and stopping the source stops it and its children (no
// orphans, no zombies).
type Process struct {
	// Name labels the log lines, e.g. "rpicam".
	Name string
	// Argv is the program and its arguments; Fallbacks are tried in order
	// when Argv[0] is not installed (rpicam-vid, then libcamera-vid).
	Argv      []string
	Fallbacks [][]string
	// InstallHint says how to get the program, e.g. "sudo apt install rpicam-apps".
	InstallHint string
	// Restart the program whenever it exits (a camera). With
	// RestartOnFailure only a failed exit restarts it, and a clean one is
	// the end of the input (a pipeline with an end).
	Restart          bool
	RestartOnFailure bool
	// ArrivalTime times raw streams by arrival, ignoring the SPS's rate.
	ArrivalTime bool
	FPS         float64
	Now         func() time.Time
	Logger      *slog.Logger
	// StopTimeout is how long the program has after SIGINT before it is
	// killed; 5 s when zero.
	StopTimeout time.Duration
}

// ErrNotInstalled is returned when the program a source needs is missing.
var ErrNotInstalled = errors.New("program not found")

// resolve finds the first installed program of Argv and Fallbacks.
func (p *Process) resolve() ([]string, error) {
	for _, argv := range append([][]string{p.Argv}, p.Fallbacks...) {
		if path, err := exec.LookPath(argv[0]); err == nil {
			return append([]string{path}, argv[1:]...), nil
		}
	}
	names := []string{p.Argv[0]}
	for _, f := range p.Fallbacks {
		names = append(names, f[0])
	}
	hint := ""
	if p.InstallHint != "" {
		hint = ": " + p.InstallHint
	}
	return nil, fmt.Errorf("%s %w%s", strings.Join(names, " or "), ErrNotInstalled, hint)
}

// Run implements Source.
func (p *Process) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(p.Now, p.Logger)
	log = log.With("source", p.Name)
	argv, err := p.resolve()
	if err != nil {
		return err
	}
	cs := &continuingSink{inner: sink}
	return restartLoop(ctx, now, cs,
		func() error { return p.runOnce(ctx, argv, cs, log) },
		func(err error) (bool, error) {
			switch {
			case !p.Restart && (!p.RestartOnFailure || err == nil):
				return true, err
			case !p.Restart && cs.tracks == nil:
				// It failed before producing any video: a mistake in the
				// command, not a camera hiccup.
				return true, fmt.Errorf("%s produced no video: %w", argv[0], err)
			}
			return false, nil
		},
		func(err error, delay time.Duration) {
			log.Warn("the program stopped; restarting it", "program", argv[0], "reason", err, "in", delay)
		})
}

// restartLoop calls run until ctx ends or final says a result ends it,
// waiting between runs with back-off (1 s doubling to 30 s, back to 1 s
// after a run of 30 s) and continuing the stream's timestamps across runs.
func restartLoop(ctx context.Context, now func() time.Time, cs *continuingSink, run func() error,
	final func(error) (bool, error), restarting func(err error, delay time.Duration)) error {
	delay := time.Second
	for {
		started := now()
		err := run()
		if ctx.Err() != nil {
			return nil
		}
		if done, result := final(err); done {
			return result
		}
		if now().Sub(started) > 30*time.Second {
			delay = time.Second // it ran a good while: start over fresh
		}
		restarting(err, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		delay = min(delay*2, 30*time.Second)
		cs.nextRun()
	}
}

func (p *Process) runOnce(ctx context.Context, argv []string, sink Sink, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Its own process group, so that stopping it reaches its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = p.StopTimeout
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	log.Info("starting", "command", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				log.Info(line)
			}
		}
	}()
	runErr := p.consume(ctx, stdout, sink, log)
	// Whatever ended the reading, the program goes too (SIGINT to its
	// group, SIGKILL after StopTimeout), and is reaped.
	cancel()
	waitErr := cmd.Wait()
	// Members of its group that ignore SIGINT (a shell's background jobs)
	// or outlived it are killed as well.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-logDone
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		return runErr
	case waitErr != nil && ctx.Err() == nil:
		return fmt.Errorf("%s exited: %w", argv[0], waitErr)
	}
	return nil
}

func (p *Process) consume(ctx context.Context, r io.Reader, sink Sink, log *slog.Logger) error {
	src, err := Sniff(r, false, Options{FPS: p.FPS, Now: p.Now, Logger: log})
	if err != nil {
		return err
	}
	if a, ok := src.(*AnnexB); ok && p.ArrivalTime {
		a.FPS, a.Arrival = 0, true
	}
	return src.Run(ctx, sink)
}

// continuingSink keeps one stream going across restarts of a program: the
// tracks are announced once, and each run's timestamps continue after the
// previous run's.
type continuingSink struct {
	inner   Sink
	tracks  []media.Track
	offset  time.Duration // added to this run's timestamps
	first   bool          // the next frame is this run's first
	base    time.Duration // this run's first timestamp
	lastEnd time.Duration // the latest timestamp sent, after offset
}

func (c *continuingSink) Start(tracks []media.Track) error {
	if c.tracks == nil {
		c.tracks, c.first = tracks, true
		return c.inner.Start(tracks)
	}
	if !sameTracks(c.tracks, tracks) {
		return errors.New("the program restarted with different tracks (codec or picture size changed); restart kvsgo to follow")
	}
	return nil
}

func sameTracks(a, b []media.Track) bool {
	return slices.EqualFunc(a, b, func(x, y media.Track) bool {
		return x.CodecID == y.CodecID && x.Width == y.Width && x.Height == y.Height && x.Kind == y.Kind
	})
}

// nextRun prepares the timestamps of a new run of the program.
func (c *continuingSink) nextRun() {
	c.first = true
	c.offset = c.lastEnd + 100*time.Millisecond
}

func (c *continuingSink) Frame(f media.Frame) error {
	if c.first {
		c.base, c.first = min(f.DTS, f.PTS), false
	}
	f.PTS += c.offset - c.base
	f.DTS += c.offset - c.base
	c.lastEnd = max(c.lastEnd, f.PTS, f.DTS)
	return c.inner.Frame(f)
}
