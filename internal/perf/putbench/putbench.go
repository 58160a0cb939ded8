// Package putbench measures one run of the real `kvsgo put` binary against
// a real kvsgo server, from outside: CPU time and peak RSS from wait4's
// rusage, system calls from strace, and, through a wire tap between the
// two, start-up and the delays from a frame to the wire, to the server and
// to PERSISTED.
package putbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/wiretap"
)

// Config describes one run.
type Config struct {
	Kvsgo     string // the binary
	Server    string // control-plane URL of kvsgo serve
	ServerPID int    // its process, for its CPU time; 0 to leave it out
	Input     string // the file put streams, paced
	Stream    string // created before the run, so start-up is a camera's restart, not a first run
	// StraceOut, when set, runs put under `strace -f -c -o StraceOut`:
	// the system call counts are kept, and the CPU, memory and delays
	// (the tracer's as much as put's) are not.
	StraceOut string
	// Args are more arguments for put.
	Args    []string
	Timeout time.Duration // [2 min]
}

// Result is what one run measured.
type Result struct {
	Wall      time.Duration
	User, Sys time.Duration
	MaxRSS    int64 // bytes
	// Video is the media time put sent: from the first frame to the last,
	// plus one frame.
	Video                      time.Duration
	Frames, Fragments, Persist int
	Sessions                   int // PutMedia connections (1 unless put reconnected)

	// From the process's start (just before exec) to its first HTTP
	// request and to the first byte of the PutMedia body crossing the tap.
	FirstRequest, FirstBody time.Duration
	// The delays leave out the first fragment, sent while the connection
	// was being set up (FirstBody covers that).
	//
	// FrameToWire: a frame's timecode (the wall clock when put took it;
	// ABSOLUTE mode) to its last byte crossing the tap.
	FrameToWire perf.Summary
	// KeyToServer: a fragment's key frame's timecode to the server's
	// BUFFERING ack for it crossing the tap (the server has parsed the
	// fragment's start).
	KeyToServer perf.Summary
	// EndToPersisted: the bytes that end a fragment crossing the tap to
	// its PERSISTED crossing back.
	EndToPersisted perf.Summary
	// LastFrameToPersisted: the fragment's last frame's timecode to its
	// PERSISTED: what a frame waits to be durable, at most.
	LastFrameToPersisted perf.Summary

	ServerCPU time.Duration
	Syscalls  *perf.Syscalls
	Output    string // put's summary line
}

// CPU is user plus system time.
func (r Result) CPU() time.Duration { return r.User + r.Sys }

// PerMinute scales d, spent on r.Video of video, to one minute of video.
func (r Result) PerMinute(d time.Duration) time.Duration {
	if r.Video <= 0 {
		return 0
	}
	return time.Duration(float64(d) * float64(time.Minute) / float64(r.Video))
}

// Run runs put once.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	su, err := url.Parse(cfg.Server)
	if err != nil || su.Host == "" {
		return Result{}, fmt.Errorf("putbench: server URL %q", cfg.Server)
	}
	if err := perf.CheckLoopback(cfg.Server); err != nil {
		return Result{}, fmt.Errorf("putbench: %w", err)
	}
	if err := perf.NewControlPlane(cfg.Server).CreateStream(ctx, cfg.Stream); err != nil {
		return Result{}, err
	}
	tap, err := wiretap.Listen("127.0.0.1:0", su.Host)
	if err != nil {
		return Result{}, err
	}
	defer tap.Close()

	args := append([]string{"put", "--stream", cfg.Stream, "--source", cfg.Input, "--endpoint", tap.URL(),
		"--region", perf.Region, "--no-create", "--quiet"}, cfg.Args...)
	name := cfg.Kvsgo
	if cfg.StraceOut != "" {
		args = append([]string{"-f", "-c", "-o", cfg.StraceOut, "--", cfg.Kvsgo}, args...)
		name = "strace"
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = perf.Env(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var srvBefore perf.ProcUsage
	if cfg.ServerPID > 0 {
		if srvBefore, err = perf.ReadProc(cfg.ServerPID); err != nil {
			return Result{}, err
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("starting %s: %w", name, err)
	}
	err = cmd.Wait()
	res := Result{Wall: time.Since(start), Output: strings.TrimSpace(stdout.String())}
	if err != nil {
		return res, fmt.Errorf("kvsgo put %s: %w\n%s", cfg.Input, err, tail(stderr.String(), 2000))
	}
	if cfg.ServerPID > 0 {
		if after, err := perf.ReadProc(cfg.ServerPID); err == nil {
			res.ServerCPU = after.Sub(srvBefore).CPU()
		}
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.User = time.Duration(ru.Utime.Nano())
		res.Sys = time.Duration(ru.Stime.Nano())
		res.MaxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	_ = tap.Close() // put has gone: nothing more will cross
	if err := analyse(&res, start, tap.Requests(), tap.Sessions(), cfg.StraceOut != ""); err != nil {
		return res, fmt.Errorf("kvsgo put %s: %w\n%s", cfg.Input, err, tail(stderr.String(), 2000))
	}
	if cfg.StraceOut != "" {
		b, err := os.ReadFile(cfg.StraceOut)
		if err != nil {
			return res, fmt.Errorf("strace's summary: %w", err)
		}
		s, err := perf.ParseStraceSummary(b)
		if err != nil {
			return res, err
		}
		res.Syscalls = &s
	}
	return res, nil
}

// analyse turns what crossed the tap into the run's delays.
func analyse(res *Result, start time.Time, reqs []wiretap.Request, sessions []wiretap.Session, traced bool) error {
	if len(reqs) == 0 {
		return errors.New("no request crossed the tap")
	}
	if len(sessions) == 0 {
		return errors.New("no PutMedia request crossed the tap")
	}
	res.FirstRequest = reqs[0].At.Sub(start)
	res.FirstBody = sessions[0].FirstBody.Sub(start)
	res.Sessions = len(sessions)
	var wire, server, end, last []time.Duration
	var first, lastTC time.Time
	var gaps []time.Duration
	for _, s := range sessions {
		if s.ScanErr != "" {
			return fmt.Errorf("the tap could not follow the PutMedia body: %s", s.ScanErr)
		}
		var prev time.Time
		for _, f := range s.Frames {
			tc := s.Time(f.Timecode)
			if f.Fragment > 0 || len(sessions) > 1 {
				wire = append(wire, f.At.Sub(tc))
			}
			if first.IsZero() || tc.Before(first) {
				first = tc
			}
			if tc.After(lastTC) {
				lastTC = tc
			}
			if !prev.IsZero() && tc.After(prev) {
				gaps = append(gaps, tc.Sub(prev))
			}
			prev = tc
		}
		res.Frames += len(s.Frames)
		for i, f := range s.Fragments {
			res.Fragments++
			if !f.Persisted.IsZero() {
				res.Persist++
			}
			if i == 0 && len(sessions) == 1 {
				continue // sent while the connection was being set up: start-up covers it
			}
			if !f.Buffering.IsZero() {
				server = append(server, f.Buffering.Sub(s.Time(f.Timecode)))
			}
			if f.Persisted.IsZero() {
				continue
			}
			if !f.Completed.IsZero() {
				end = append(end, f.Persisted.Sub(f.Completed))
			}
			last = append(last, f.Persisted.Sub(s.Time(f.LastTimecode)))
		}
	}
	if res.Frames == 0 {
		return errors.New("no frame crossed the tap")
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		res.Video = lastTC.Sub(first) + gaps[len(gaps)/2]
	}
	res.FrameToWire = perf.Summarize(wire)
	res.KeyToServer = perf.Summarize(server)
	res.EndToPersisted = perf.Summarize(end)
	res.LastFrameToPersisted = perf.Summarize(last)
	// The delays from a frame read its timecode as the wall clock when put
	// took the frame. If most frames reached the wire before their
	// timecode, that reading is wrong (RELATIVE timecodes, or a producer
	// that no longer stamps with the clock), and the figures would lie.
	// Under strace the delays are not used: a start slowed by the tracer
	// puts the first frame's time (the clock when the producer took it)
	// after the pacer's start, and the paced frames then cross early.
	if res.FrameToWire.P50 < -5*time.Millisecond && !traced {
		return fmt.Errorf("frames reached the wire a median %v before their timecodes: the timecodes are not the wall clock, so frame delays cannot be observed from outside", -res.FrameToWire.P50)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
