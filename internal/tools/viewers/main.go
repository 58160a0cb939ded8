// Command viewers measures what live WebRTC viewers cost `kvsgo serve`: a
// fresh serve on 127.0.0.1, one live stream of about 1 Mbit/s (ffmpeg's
// testsrc2 with noise, H.264 without B-frames, a key frame a second, sent
// by `kvsgo put`), and N WHEP viewers (pion, in this process). It reads
// serve's CPU time and memory from /proc with no viewers, then with all N,
// and checks every viewer received the stream. scripts/viewers runs it; see
// docs/BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/whep"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "viewers:", err)
		os.Exit(1)
	}
}

func run() error {
	kvsgo := flag.String("kvsgo", "", "the kvsgo binary (built from this tree when empty)")
	n := flag.Int("n", 50, "viewers")
	dur := flag.Duration("duration", 30*time.Second, "how long each phase is measured")
	bitrate := flag.String("bitrate", "1M", "the stream's bitrate (ffmpeg -b:v)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "kvsgo-viewers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *kvsgo == "" {
		*kvsgo = filepath.Join(dir, "kvsgo")
		build := exec.Command("go", "build", "-o", *kvsgo, "./cmd/kvsgo")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building kvsgo: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, *kvsgo, "serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "warn")
	serve.Stderr = os.Stderr
	base, err := perf.StartAndFind(serve, regexp.MustCompile(`listening on (http://\S+)`))
	if err != nil {
		return fmt.Errorf("kvsgo serve: %w", err)
	}
	defer perf.Stop(serve)
	src := "exec:ffmpeg -v error -re -f lavfi -i testsrc2=size=640x360:rate=30 -vf noise=alls=12:allf=t -c:v libx264 -preset ultrafast -tune zerolatency " +
		"-b:v " + *bitrate + " -maxrate " + *bitrate + " -bufsize " + *bitrate + " -g 30 -bf 0 -pix_fmt yuv420p -f h264 -"
	put := exec.CommandContext(ctx, *kvsgo, "put", "--quiet", "--log-level", "warn", "--stream", "viewers", "--source", src, "--endpoint", base)
	put.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=viewers", "AWS_SECRET_ACCESS_KEY=viewers", "AWS_REGION=us-east-1")
	put.Stderr = os.Stderr
	if err := put.Start(); err != nil {
		return fmt.Errorf("kvsgo put: %w", err)
	}
	defer perf.Stop(put)

	// The first viewer waits for the stream to be live.
	endpoint := base + "/whep/viewers"
	first, err := dialWhenLive(ctx, endpoint, 30*time.Second)
	if err != nil {
		return err
	}
	_ = first.Close(ctx)
	time.Sleep(5 * time.Second) // the stream settles; a phase of the benchmark, not a condition

	pid := serve.Process.Pid
	idle, err := phase(pid, *dur)
	if err != nil {
		return err
	}
	var clients []*whep.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close(context.Background())
		}
	}()
	joinStart := time.Now()
	for range *n {
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := whep.Dial(dctx, endpoint, nil, nil)
		dcancel()
		if err != nil {
			return fmt.Errorf("viewer %d: %w", len(clients)+1, err)
		}
		clients = append(clients, c)
	}
	for i, c := range clients {
		select {
		case <-c.Connected():
		case <-time.After(30 * time.Second):
			return fmt.Errorf("viewer %d not connected after 30 s", i+1)
		}
	}
	joined := time.Since(joinStart)
	time.Sleep(5 * time.Second) // every viewer past its first key frame; a phase, not a condition
	before := make([]whep.ClientStats, len(clients))
	for i, c := range clients {
		before[i] = c.Stats()
	}
	busy, err := phase(pid, *dur)
	if err != nil {
		return err
	}
	var rates, frames []float64
	lost := 0
	for i, c := range clients {
		s := c.Stats()
		rates = append(rates, float64(s.Bytes-before[i].Bytes)*8/dur.Seconds())
		frames = append(frames, float64(s.Frames-before[i].Frames)/dur.Seconds())
		lost += s.Lost
		if s.FirstNALU != 24 && s.FirstNALU != 5 && s.FirstNALU != 7 {
			return fmt.Errorf("viewer %d started with NAL unit type %d, not at a key frame", i+1, s.FirstNALU)
		}
	}
	for _, c := range clients {
		if err := c.Close(ctx); err != nil {
			return fmt.Errorf("hanging up: %w", err)
		}
	}
	clients = nil
	load, _ := perf.ReadLoad()
	m := perf.DescribeMachine()
	fmt.Printf("- when: %s; machine: %s; load average %s at the end (shared with other builds)\n", time.Now().UTC().Format("2006-01-02"), m, load)
	fmt.Printf("- stream: 640x360 30 fps H.264 (no B-frames), `-b:v %s`, a key frame a second; %d viewers joined in %.1f s\n\n", *bitrate, *n, joined.Seconds())
	fmt.Printf("| serve, measured over %s | CPU (of one core) | RSS |\n|---|---|---|\n", *dur)
	fmt.Printf("| ingest only, no viewers | %.1f%% | %.0f MB |\n", 100*idle.CPU().Seconds()/dur.Seconds(), float64(idle.RSS)/1e6)
	fmt.Printf("| ingest and %d WebRTC viewers | %.1f%% | %.0f MB (peak %.0f MB) |\n", *n, 100*busy.CPU().Seconds()/dur.Seconds(), float64(busy.RSS)/1e6, float64(busy.PeakRSS)/1e6)
	fmt.Printf("| per viewer | %.2f%% | %.2f MB |\n\n", 100*(busy.CPU()-idle.CPU()).Seconds()/dur.Seconds()/float64(*n), float64(busy.RSS-idle.RSS)/1e6/float64(*n))
	fmt.Printf("Each viewer received %.2f–%.2f Mbit/s of RTP payload (median %.2f) and %.1f–%.1f frames a second; %d packets lost in all; out of serve: %.1f Mbit/s.\n",
		slices.Min(rates)/1e6, slices.Max(rates)/1e6, median(rates)/1e6, slices.Min(frames), slices.Max(frames), lost, sum(rates)/1e6)
	return nil
}

// phase measures serve's CPU time over d and its memory at the end.
func phase(pid int, d time.Duration) (perf.ProcUsage, error) {
	a, err := perf.ReadProc(pid)
	if err != nil {
		return a, err
	}
	time.Sleep(d) // the measured interval
	b, err := perf.ReadProc(pid)
	if err != nil {
		return b, err
	}
	return b.Sub(a), nil
}

func dialWhenLive(ctx context.Context, endpoint string, within time.Duration) (*whep.Client, error) {
	deadline := time.Now().Add(within)
	for {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := whep.Dial(dctx, endpoint, nil, nil)
		cancel()
		var he *whep.HTTPError
		if err == nil || !errors.As(err, &he) || (he.Status != 409 && he.Status != 404) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(200 * time.Millisecond) // between tries, until the stream is live
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}
