package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
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
	// killed, and after closing its output before it gets SIGINT; 5 s when
	// zero.
	StopTimeout time.Duration
	// MaxFailures ends a RestartOnFailure program that failed this many
	// times in a row, each within 30 s of its start; 5 when zero.
	MaxFailures int
	// Backoff is the wait before a restart; 1 s doubling to 30 s when zero.
	Backoff backoff
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
	argv, err := p.resolve()
	if err != nil {
		return err
	}
	cs := &continuingSink{inner: sink, log: log}
	rapid := 0 // failures in a row, each soon after its start
	return restartLoop(ctx, now, cs, p.backoff(),
		func() error { return p.runOnce(ctx, argv, cs, log) },
		func(err error, ran time.Duration) (bool, error) {
			if se := (*sinkError)(nil); errors.As(err, &se) {
				return true, se.err // the stream's end is not the program's
			}
			switch {
			case p.Restart:
				return false, nil // a camera: always
			case !p.RestartOnFailure || err == nil:
				return true, err // a clean exit is the end of the input
			case cs.tracks == nil:
				// It failed before producing any video: a mistake in the
				// command, not a hiccup.
				return true, fmt.Errorf("%s produced no video: %w", argv[0], err)
			}
			if ran < rapidFailure {
				rapid++
			} else {
				rapid = 1
			}
			if limit := p.maxFailures(); rapid >= limit {
				return true, fmt.Errorf("%s failed %d times in a row, each within %s of starting; giving up: %w", argv[0], rapid, rapidFailure, err)
			}
			return false, nil
		},
		func(err error, delay time.Duration) {
			if err == nil {
				log.Warn("the program stopped; restarting it", "program", argv[0], "in", delay)
				return
			}
			log.Error("the program failed; restarting it", "program", argv[0], "reason", err, "in", delay)
		})
}

// rapidFailure is how soon after its start a failure counts towards
// giving up: a program that ran longer was working.
const rapidFailure = 30 * time.Second

func (p *Process) maxFailures() int {
	if p.MaxFailures > 0 {
		return p.MaxFailures
	}
	return 5
}

func (p *Process) backoff() backoff {
	if p.Backoff.First > 0 {
		return p.Backoff
	}
	return backoff{First: time.Second, Max: 30 * time.Second}
}

func (p *Process) runOnce(ctx context.Context, argv []string, sink Sink, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Its own process group, so that stopping it reaches its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	stopTimeout := p.StopTimeout
	if stopTimeout == 0 {
		stopTimeout = 5 * time.Second
	}
	cmd.WaitDelay = stopTimeout
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// Standard error through a pipe of kvsgo's own: Wait does not wait for
	// it, so a child left holding it cannot delay the stop, and it is read
	// to its end (the last lines are usually the reason for an exit) once
	// the group is gone.
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer errR.Close()
	cmd.Stderr = errW
	log.Info("starting", "command", strings.Join(argv, " "))
	err = cmd.Start()
	errW.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	stderr := &programLog{log: log, program: argv[0]}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		_, _ = io.Copy(stderr, errR)
	}()
	runErr := p.consume(ctx, stdout, sink, log)
	// The program has closed its output (the end of its input, or it is
	// failing), or the reading ended: it gets a moment to exit on its own,
	// then SIGINT to its group, SIGKILL after StopTimeout.
	var se *sinkError
	grace := stopTimeout
	if errors.As(runErr, &se) || ctx.Err() != nil {
		grace = 0
	}
	stopped := time.AfterFunc(grace, cancel)
	waitErr := cmd.Wait()
	ours := !stopped.Stop() // kvsgo stopped it
	// Members of its group that ignore SIGINT (a shell's background jobs)
	// or outlived it are killed as well.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-logged:
	case <-time.After(stopTimeout):
		errR.Close() // a child outside the group still holds it
		<-logged
	}
	stderr.flush()
	switch {
	case se != nil:
		return runErr
	case ctx.Err() != nil && !ours:
		return nil // kvsgo is stopping
	case waitErr != nil && !ours:
		// Its own exit status says more than what its output looked like.
		if line := stderr.firstError(); line != "" {
			return fmt.Errorf("%s exited (%w): %s", argv[0], waitErr, line)
		}
		return fmt.Errorf("%s exited: %w", argv[0], waitErr)
	case runErr != nil:
		return runErr
	case ours:
		log.Warn("the program closed its output but did not exit; stopped it", "program", argv[0])
	}
	return nil
}

func (p *Process) consume(ctx context.Context, r io.Reader, sink Sink, log *slog.Logger) error {
	// A program that stops writing (or ignores SIGINT) must not hold a stop.
	r, release := interruptible(ctx, r)
	defer release()
	src, err := Sniff(r, false, Options{FPS: p.FPS, Now: p.Now, Logger: log})
	if err != nil {
		if errors.Is(err, ErrUnknownFormat) && strings.Contains(err.Error(), "empty") {
			return nil // no output at all: the exit status tells
		}
		return err
	}
	if a, ok := src.(*AnnexB); ok && p.ArrivalTime {
		a.FPS, a.Arrival = 0, true
	}
	return src.Run(ctx, sink)
}
