package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/putbench"
)

// putCase is one clip in one container, and its runs.
type putCase struct {
	clip   perf.ClipSpec
	input  perf.Input
	camera bool // with the camera build
	runs   []putbench.Result
	trace  *putbench.Result
}

func (c *putCase) binary(b *bench) string {
	if c.camera {
		return b.camera
	}
	return b.kvsgo
}

func (c *putCase) inputName() string {
	if c.camera {
		return c.input.Format + ", camera build"
	}
	return c.input.Format
}

// put measures kvsgo put: every clip in every container, s.runs times,
// interleaved so that a burst of load elsewhere hits every case alike;
// then one run of each under strace; and the floor beside them.
func (b *bench) put(ctx context.Context) (string, error) {
	load0, _ := perf.ReadLoad()
	var cases []*putCase
	for _, spec := range b.s.clips {
		progress("making the %s clip with ffmpeg (cached in %s)", spec.Name(), perf.CacheDir())
		clip, err := perf.MakeClip(ctx, perf.CacheDir(), spec)
		if err != nil {
			return "", err
		}
		for _, in := range clip.Inputs() {
			cases = append(cases, &putCase{clip: spec, input: in})
		}
		// The camera build, at the largest size: what a camera that only
		// sends video would run.
		if spec == b.s.clips[len(b.s.clips)-1] {
			for _, in := range clip.Inputs() {
				cases = append(cases, &putCase{clip: spec, input: in, camera: true})
			}
		}
	}
	floorBin := filepath.Join(b.work, "pacefloor")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", floorBin, "./internal/tools/pacefloor").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building pacefloor: %w\n%s", err, out)
	}
	dataDir := filepath.Join(b.work, "put-data")
	srv, err := perf.StartServe(ctx, perf.ServeOptions{Binary: b.kvsgo, DataDir: dataDir, LogPath: filepath.Join(b.work, "put-serve.log")})
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	floors := map[int][]time.Duration{} // bit rate → CPU per minute
	n := 0
	for r := range b.s.runs {
		for _, spec := range b.s.clips {
			f, _, err := floor(ctx, floorBin, spec, b.s.floorSeconds, "")
			if err != nil {
				return "", err
			}
			floors[spec.Bitrate] = append(floors[spec.Bitrate], f)
		}
		for _, c := range cases {
			n++
			res, err := putbench.Run(ctx, putbench.Config{Kvsgo: c.binary(b), Server: srv.URL, ServerPID: srv.PID, Input: c.input.Path,
				Stream: fmt.Sprintf("bench-%d", n)})
			if err != nil {
				return "", err
			}
			progress("put %s %s, run %d of %d: CPU %.2f s per minute of video, peak RSS %.1f MiB, start-up %s ms",
				c.clip.Name(), c.inputName(), r+1, b.s.runs, res.PerMinute(res.CPU()).Seconds(), mib(res.MaxRSS), perf.Millis(res.FirstBody))
			c.runs = append(c.runs, res)
		}
	}
	if _, err := exec.LookPath("strace"); err != nil {
		return "", fmt.Errorf("counting system calls needs strace (apt-get install strace): %w", err)
	}
	for _, c := range cases {
		n++
		res, err := putbench.Run(ctx, putbench.Config{Kvsgo: c.binary(b), Server: srv.URL, Input: c.input.Path,
			Stream: fmt.Sprintf("bench-%d", n), StraceOut: filepath.Join(b.work, fmt.Sprintf("strace-%d.txt", n))})
		if err != nil {
			return "", err
		}
		progress("put %s %s under strace: %d system calls, %.1f per frame", c.clip.Name(), c.inputName(), res.Syscalls.Total, float64(res.Syscalls.Total)/float64(res.Frames))
		c.trace = &res
	}
	// The floor under strace too: what the Go runtime itself does per
	// frame around one sleep and one write.
	floorTraces := map[int]*putbench.Result{}
	for _, spec := range b.s.clips {
		_, sc, err := floor(ctx, floorBin, spec, b.s.floorSeconds, filepath.Join(b.work, fmt.Sprintf("strace-floor-%d.txt", spec.Bitrate)))
		if err != nil {
			return "", err
		}
		floorTraces[spec.Bitrate] = &putbench.Result{Syscalls: sc, Frames: int(b.s.floorSeconds * float64(spec.FPS))}
	}
	load1, _ := perf.ReadLoad()
	return b.putReport(cases, floors, floorTraces, dataDir, load0, load1), nil
}

// floor runs pacefloor at the clip's frame rate and mean frame size and
// returns its CPU per minute of stream; with straceOut, under `strace -f
// -c`, and its system calls (its CPU then is the tracer's as much).
func floor(ctx context.Context, bin string, spec perf.ClipSpec, secs float64, straceOut string) (time.Duration, *perf.Syscalls, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	args := []string{bin, "--addr", ln.Addr().String(), "--fps", fmt.Sprint(spec.FPS),
		"--bytes", fmt.Sprint(spec.Bitrate / 8 / spec.FPS), "--seconds", fmt.Sprint(secs)}
	if straceOut != "" {
		args = append([]string{"strace", "-f", "-c", "-o", straceOut, "--"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = ln.Close()
		<-done
		return 0, nil, fmt.Errorf("pacefloor: %w\n%s", err, out)
	}
	<-done
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var sc *perf.Syscalls
	if straceOut != "" {
		b, err := os.ReadFile(straceOut)
		if err != nil {
			return 0, nil, err
		}
		s, err := perf.ParseStraceSummary(b)
		if err != nil {
			return 0, nil, fmt.Errorf("pacefloor's strace summary: %w", err)
		}
		sc = &s
	}
	return time.Duration(float64(cpu) * 60 / secs), sc, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// medianOf is the median over a case's runs of one measure.
func medianOf(runs []putbench.Result, f func(putbench.Result) time.Duration) time.Duration {
	v := make([]time.Duration, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return perf.Median(v)
}

func rangeOf(runs []putbench.Result, f func(putbench.Result) time.Duration) (lo, hi time.Duration) {
	for i, r := range runs {
		v := f(r)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}

func summaries(runs []putbench.Result, f func(putbench.Result) perf.Summary) perf.Summary {
	s := make([]perf.Summary, len(runs))
	for i, r := range runs {
		s[i] = f(r)
	}
	return perf.MedianSummary(s)
}

func (b *bench) putReport(cases []*putCase, floors map[int][]time.Duration, floorTraces map[int]*putbench.Result, dataDir string, load0, load1 perf.Load) string {
	var w strings.Builder
	w.WriteString(b.header(load0, load1))
	fmt.Fprintf(&w, "\nClips: ffmpeg's testsrc2 encoded by x264 (main profile, a key frame every second, no B-frames), %d s each; the Annex-B and MP4 files are copies of the Matroska one's stream. "+
		"`kvsgo put --source FILE` paces the file itself. %s; system calls come from one more run under `strace -f -c` (start-up included, over all frames). "+
		"The server, `kvsgo serve` with its data on %s, is measured separately.\n\n",
		b.s.clips[0].Seconds, runsPhrase(b.s.runs), perf.FSType(filepath.Dir(dataDir)))
	w.WriteString("| clip | input | CPU s per minute of video: user + sys = total | × floor | peak RSS | system calls per frame | start → first request | start → first PutMedia byte | server CPU s per minute |\n")
	w.WriteString("|---|---|---|---:|---:|---|---:|---:|---:|\n")
	for _, c := range cases {
		per := func(f func(putbench.Result) time.Duration) func(putbench.Result) time.Duration {
			return func(r putbench.Result) time.Duration { return r.PerMinute(f(r)) }
		}
		user := medianOf(c.runs, per(func(r putbench.Result) time.Duration { return r.User }))
		sys := medianOf(c.runs, per(func(r putbench.Result) time.Duration { return r.Sys }))
		total := medianOf(c.runs, per(putbench.Result.CPU))
		lo, hi := rangeOf(c.runs, per(putbench.Result.CPU))
		cpu := fmt.Sprintf("%s + %s = **%s**", secs(user), secs(sys), secs(total))
		if len(c.runs) > 1 {
			cpu += fmt.Sprintf(" (%s–%s)", secs(lo), secs(hi))
		}
		rss := medianOf(c.runs, func(r putbench.Result) time.Duration { return time.Duration(r.MaxRSS) })
		first := medianOf(c.runs, func(r putbench.Result) time.Duration { return r.FirstRequest })
		body := medianOf(c.runs, func(r putbench.Result) time.Duration { return r.FirstBody })
		srv := medianOf(c.runs, per(func(r putbench.Result) time.Duration { return r.ServerCPU }))
		ratio := "–"
		if f := perf.Median(floors[c.clip.Bitrate]); f > 0 {
			ratio = fmt.Sprintf("%.1f", total.Seconds()/f.Seconds())
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %.1f MiB | %s | %s ms | %s ms | %s |\n", c.clip.Name(), c.inputName(), cpu, ratio, mib(int64(rss)),
			syscallsPerFrame(c.trace), perf.Millis(first), perf.Millis(body), secs(srv))
	}
	for _, spec := range b.s.clips {
		f := perf.Median(floors[spec.Bitrate])
		fmt.Fprintf(&w, "| %s | *floor*: a Go loop, one sleep and one write per frame (`pacefloor`) | **%s** | 1 | | %s | | | |\n", spec.Name(), secs(f), syscallsPerFrame(floorTraces[spec.Bitrate]))
	}
	w.WriteString("\nTargets (issue 9): CPU at most half of kvssink's (kvssink v3.5.0 took 0.40 s for 20 s of 1080p30 4 Mbit/s, i.e. 1.2 s per minute: target ≤ 0.6 s per minute), " +
		"peak RSS ≤ 20 MiB with every input, start-up ≤ 30 ms to the first PutMedia byte (kvssink: ~60 ms), close to one wake-up and one write per frame.\n")

	frames, frags := 0, 0
	if len(cases) > 0 && len(cases[0].runs) > 0 {
		frames, frags = cases[0].runs[0].FrameToWire.N, cases[0].runs[0].EndToPersisted.N
	}
	fmt.Fprintf(&w, "\nDelays, in ms, p50 / p95 / p99 / max (medians over the runs). The first fragment, sent while the connection is being set up, is left out (start-up covers it), "+
		"which leaves about %d frames and %d fragments per run: with so few fragments their p95, p99 and max are the same few samples. "+
		"Timecodes are whole milliseconds, so frame figures may read up to 1 ms high.\n\n", frames, frags)
	w.WriteString("| clip | input | frame → wire | key frame → server (its BUFFERING back) | fragment end → PERSISTED | last frame → PERSISTED |\n")
	w.WriteString("|---|---|---|---|---|---|\n")
	for _, c := range cases {
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s |\n", c.clip.Name(), c.inputName(),
			summaries(c.runs, func(r putbench.Result) perf.Summary { return r.FrameToWire }),
			summaries(c.runs, func(r putbench.Result) perf.Summary { return r.KeyToServer }),
			summaries(c.runs, func(r putbench.Result) perf.Summary { return r.EndToPersisted }),
			summaries(c.runs, func(r putbench.Result) perf.Summary { return r.LastFrameToPersisted }))
	}
	var notes []string
	for _, c := range cases {
		for _, r := range c.runs {
			if r.Sessions > 1 || r.Persist != r.Fragments {
				notes = append(notes, fmt.Sprintf("%s %s: %d connections, %d of %d fragments persisted", c.clip.Name(), c.inputName(), r.Sessions, r.Persist, r.Fragments))
			}
		}
	}
	if len(notes) > 0 {
		w.WriteString("\nRuns that reconnected or lost fragments: " + strings.Join(notes, "; ") + ".\n")
	}
	return w.String()
}

func runsPhrase(n int) string {
	if n == 1 {
		return "Each figure is from one run"
	}
	return fmt.Sprintf("Each figure is the median of %d runs (CPU: their range in brackets)", n)
}

// syscallsPerFrame is the total per frame and the four most frequent.
func syscallsPerFrame(r *putbench.Result) string {
	if r == nil || r.Syscalls == nil || r.Frames == 0 {
		return "–"
	}
	s := r.Syscalls
	fr := float64(r.Frames)
	var top []string
	for _, name := range s.Top(4) {
		top = append(top, fmt.Sprintf("%s %.1f", name, float64(s.Calls[name])/fr))
	}
	return fmt.Sprintf("**%.1f** (%s)", float64(s.Total)/fr, strings.Join(top, ", "))
}
