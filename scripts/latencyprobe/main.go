// Command latencyprobe measures the live latency of the page of `kvsgo
// serve` in headless Chromium: a stream with a key frame every second goes
// into serve, the page plays it live with hls.js (-over hls) or WebRTC
// (-over webrtc), and every second the probe reads the wall-clock time of
// the frame on screen against the clock: over HLS, hls.js playingDate
// (from EXT-X-PROGRAM-DATE-TIME, i.e. the producer timestamps); over
// WebRTC, the frame's RTP timestamp, which serve makes the producer
// timestamp on the 90 kHz clock, from requestVideoFrameCallback.
// scripts/latency runs it and writes docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsgo/kvsgo/internal/pagetest"
	"github.com/kvsgo/kvsgo/internal/perf"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "latencyprobe:", err)
		os.Exit(1)
	}
}

type options struct {
	kvsgo, chromium string
	samples         int
	warmup          time.Duration
	jsonOut         bool
	over            string
}

func run() error {
	var o options
	flag.StringVar(&o.kvsgo, "kvsgo", "kvsgo", "the kvsgo binary")
	flag.StringVar(&o.chromium, "chromium", "chromium", "the Chromium binary")
	flag.IntVar(&o.samples, "samples", 60, "readings, one a second")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "playing time before the first reading")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of Markdown")
	flag.StringVar(&o.over, "over", "hls", "how the page plays the stream live: hls or webrtc")
	flag.Parse()
	if o.over == "webrtc" {
		res, err := measureWebRTC(o)
		if err != nil {
			return err
		}
		if o.jsonOut {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		}
		res.markdown(os.Stdout)
		return nil
	}
	if o.over != "hls" {
		return fmt.Errorf("-over %q: want hls or webrtc", o.over)
	}
	res, err := measure(o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.markdown(os.Stdout)
	return nil
}

// sample is one reading in the page.
type sample struct {
	Now         float64 `json:"now"`         // Date.now()
	PlayingDate float64 `json:"playingDate"` // hls.playingDate, ms
	HLSLatency  float64 `json:"hlsLatency"`  // hls.js's own estimate, s
	Buffer      float64 `json:"buffer"`      // seconds buffered ahead of the playhead
	Rate        float64 `json:"rate"`
	Stalls      int     `json:"stalls"` // "waiting" events so far
	Players     int     `json:"players"`
}

type result struct {
	Source       string                 `json:"source"`
	Config       map[string]any         `json:"config"`
	Latency      []float64              `json:"latency"` // s, one per reading
	Buffer       []float64              `json:"buffer"`
	HLSLatency   []float64              `json:"hlsLatency"`
	Delivery     []float64              `json:"delivery"` // fragment end (producer time) → loaded by hls.js, s
	FragDuration float64                `json:"fragDuration"`
	MinBuffer    float64                `json:"minBuffer"` // the least buffered ahead, s (read every 50 ms)
	Stalls       int                    `json:"stalls"`
	Players      int                    `json:"players"`
	PlayerErrors []pagetest.PlayerError `json:"playerErrors"`
	Warmup       string                 `json:"warmup"`
	When         time.Time              `json:"when"`
}

// live is serve with kvsgo's test clip streaming into it, and Chromium.
type live struct {
	base    string
	browser *pagetest.Browser
	close   func()
}

func measure(o options) (*result, error) {
	l, err := startLive(o)
	if err != nil {
		return nil, err
	}
	defer l.close()
	b, base := l.browser, l.base
	if err := b.Do(30*time.Second, chromedp.Navigate(base+"/?live=hls")); err != nil {
		return nil, err
	}
	// The page starts its live player once the stream is live.
	if err := b.Poll(`(() => { const p = window.__kvsgoHLS && window.__kvsgoHLS.players.at(-1);
		return !!p && !!p.media && p.media.currentTime > 0 && !!p.playingDate; })()`, 60*time.Second); err != nil {
		return nil, fmt.Errorf("the page's player does not play the stream: %w", err)
	}
	if _, err := pagetest.Eval[bool](b, `(() => { const v = window.__kvsgoHLS.players.at(-1).media;
		window.__stalls = 0; v.addEventListener("waiting", () => window.__stalls++);
		window.__minBuffer = Infinity;
		setInterval(() => { for (let i = 0; i < v.buffered.length; i++) if (v.buffered.start(i) <= v.currentTime && v.currentTime <= v.buffered.end(i))
			window.__minBuffer = Math.min(window.__minBuffer, v.buffered.end(i) - v.currentTime); }, 50);
		return true; })()`); err != nil {
		return nil, err
	}
	time.Sleep(o.warmup) // playing time, not a condition: hls.js settles on its target latency
	cfg, err := pagetest.Eval[map[string]any](b, `(() => { const c = window.__kvsgoHLS.players.at(-1).config;
		return {lowLatencyMode: c.lowLatencyMode, liveSyncDuration: c.liveSyncDuration ?? null, liveSyncDurationCount: c.liveSyncDurationCount,
			liveMaxLatencyDuration: c.liveMaxLatencyDuration ?? null, liveMaxLatencyDurationCount: c.liveMaxLatencyDurationCount,
			maxLiveSyncPlaybackRate: c.maxLiveSyncPlaybackRate}; })()`)
	if err != nil {
		return nil, err
	}
	res := &result{Source: "testsrc (320x240, 30 fps, a key frame every second)", Config: cfg, Warmup: o.warmup.String(), When: time.Now().UTC()}
	start := time.Now()
	next := time.Now()
	for i := 0; i < o.samples; i++ {
		next = next.Add(time.Second)
		time.Sleep(time.Until(next))
		s, err := pagetest.Eval[sample](b, `(() => { const p = window.__kvsgoHLS.players.at(-1), v = p.media;
			let buf = 0; for (let i = 0; i < v.buffered.length; i++) if (v.buffered.start(i) <= v.currentTime && v.currentTime <= v.buffered.end(i)) buf = v.buffered.end(i) - v.currentTime;
			return {now: Date.now(), playingDate: p.playingDate ? p.playingDate.getTime() : 0, hlsLatency: p.latency || 0,
				buffer: buf, rate: v.playbackRate, stalls: window.__stalls, players: window.__kvsgoHLS.players.length}; })()`)
		if err != nil {
			return nil, err
		}
		if s.PlayingDate == 0 {
			return nil, fmt.Errorf("reading %d: the player shows no frame with a date", i)
		}
		res.Latency = append(res.Latency, (s.Now-s.PlayingDate)/1000)
		res.Buffer = append(res.Buffer, s.Buffer)
		res.HLSLatency = append(res.HLSLatency, s.HLSLatency)
		res.Stalls, res.Players = s.Stalls, s.Players
	}
	if res.MinBuffer, err = pagetest.Eval[float64](b, `window.__minBuffer`); err != nil {
		return nil, err
	}
	rec, err := b.HLS()
	if err != nil {
		return nil, err
	}
	res.PlayerErrors = rec.Errors
	for _, f := range rec.Fragments {
		if f.Type == "main" && f.PDT > 0 && f.At >= float64(start.UnixMilli()) {
			res.Delivery = append(res.Delivery, (f.At-f.PDT)/1000-f.Dur)
			res.FragDuration = f.Dur
		}
	}
	if errs := b.PageErrors(); len(errs) > 0 {
		return nil, fmt.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
	return res, nil
}

// startLive starts serve, kvsgo put streaming its test clip into it, and
// Chromium; close stops them.
func startLive(o options) (*live, error) {
	dir, err := os.MkdirTemp("", "kvsgo-latency-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		cancel()
		_ = os.RemoveAll(dir)
	}
	serve := exec.CommandContext(ctx, o.kvsgo, "serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "warn")
	serve.Stderr = os.Stderr
	base, err := perf.StartAndFind(serve, regexp.MustCompile(`listening on (http://\S+)`))
	stops = append(stops, func() { perf.Stop(serve) })
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("kvsgo serve: %w", err)
	}

	env := append(os.Environ(), "AWS_ACCESS_KEY_ID=latency", "AWS_SECRET_ACCESS_KEY=latency", "AWS_REGION=us-east-1")
	// testsrc: kvsgo's built-in clip (320x240, 30 fps, a key frame every 30
	// frames), paced by kvsgo itself, so that a frame's producer timestamp
	// is the wall-clock time it was sent. (A raw stream from another
	// program is timed from its first frame's arrival and its frame rate;
	// a first frame that comes late shifts every timestamp, and the
	// measured latency with it.)
	put := exec.CommandContext(ctx, o.kvsgo, "put", "--quiet", "--log-level", "warn", "--stream", "latency", "--source", "testsrc", "--endpoint", base)
	put.Env, put.Stderr = env, os.Stderr
	if err := put.Start(); err != nil {
		cleanup()
		return nil, fmt.Errorf("kvsgo put: %w", err)
	}
	stops = append(stops, func() { perf.Stop(put) })

	b, err := pagetest.Start(o.chromium, 1280, 900)
	if err != nil {
		cleanup()
		return nil, err
	}
	stops = append(stops, b.Close)
	return &live{base: base, browser: b, close: cleanup}, nil
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (r *result) markdown(w io.Writer) {
	row := func(name string, v []float64) {
		fmt.Fprintf(w, "| %s | %.2f s | %.2f s | %.2f s | %.2f s |\n", name, percentile(v, 50), percentile(v, 95), slices.Min(v), slices.Max(v))
	}
	fmt.Fprintf(w, "| measured | p50 | p95 | min | max |\n|---|---|---|---|---|\n")
	row("**latency**: the clock − the playing frame's time (hls.js `playingDate`)", r.Latency)
	row("hls.js's own estimate (`hls.latency`)", r.HLSLatency)
	if len(r.Delivery) > 0 {
		row("a fragment's last frame (producer time) → hls.js has loaded the fragment", r.Delivery)
	}
	fmt.Fprintf(w, "\n%d readings, one a second, after %s of playing; source %s; fragments of %.2f s; "+
		"the least buffered ahead of the playhead %.2f s (read every 50 ms); %d stalls; %d player(s); %d hls.js errors.\n",
		len(r.Latency), r.Warmup, r.Source, r.FragDuration, r.MinBuffer, r.Stalls, r.Players, len(r.PlayerErrors))
	cfg, _ := json.Marshal(r.Config)
	fmt.Fprintf(w, "The page's live hls.js settings: `%s`.\n", cfg)
}
