package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsgo/kvsgo/internal/pagetest"
)

// webrtcResult is the live latency over WebRTC.
type webrtcResult struct {
	Source string `json:"source"`
	// Latency: the clock − the shown frame's producer time, s, one reading a second.
	Latency []float64 `json:"latency"`
	// Frames: the same for every frame shown, s.
	Frames []float64 `json:"frames"`
	// JitterBuffer: Chromium's average time a frame waits in its jitter
	// buffer, s (getStats jitterBufferDelay / jitterBufferEmittedCount).
	JitterBuffer float64              `json:"jitterBuffer"`
	Stats        pagetest.WebRTCVideo `json:"stats"`
	Warmup       string               `json:"warmup"`
	When         time.Time            `json:"when"`
}

// frameRecorder records, for every frame the <video> shows, the clock at
// its display minus its producer time: serve sends each frame with its
// producer timestamp as RTP timestamp (90 kHz, modulo 2^32), which
// requestVideoFrameCallback reports as rtpTimestamp.
const frameRecorder = `(() => {
	const v = document.querySelector('.card[data-stream="latency"] video');
	window.__lat = { frames: [], last: null };
	const wrap = 2 ** 32;
	const step = (_, m) => {
		if (m.rtpTimestamp !== undefined) {
			const shown = performance.timeOrigin + (m.expectedDisplayTime || m.presentationTime);
			const d = ((((Math.round(shown * 90) % wrap) - m.rtpTimestamp) % wrap) + wrap) % wrap / 90 / 1000;
			window.__lat.frames.push(d);
			window.__lat.last = d;
		}
		v.requestVideoFrameCallback(step);
	};
	v.requestVideoFrameCallback(step);
	return true;
})()`

func measureWebRTC(o options) (*webrtcResult, error) {
	l, err := startLive(o)
	if err != nil {
		return nil, err
	}
	defer l.close()
	b := l.browser
	if err := b.Do(30*time.Second, chromedp.Navigate(l.base+"/")); err != nil {
		return nil, err
	}
	card := `.card[data-stream="latency"]`
	if err := b.Poll(`(() => { const c = document.querySelector('`+card+`'); const v = c && c.querySelector("video");
		return !!v && c.dataset.transport === "webrtc" && v.currentTime > 0; })()`, 60*time.Second); err != nil {
		why, _ := pagetest.Eval[string](b, `(document.querySelector('`+card+` .live-over') || {}).textContent || ""`)
		return nil, fmt.Errorf("the page does not play the stream over WebRTC (%s): %w", why, err)
	}
	if _, err := pagetest.Eval[bool](b, frameRecorder); err != nil {
		return nil, err
	}
	time.Sleep(o.warmup) // playing time, not a condition: the jitter buffer settles
	if _, err := pagetest.Eval[bool](b, `(window.__lat.frames = [], true)`); err != nil {
		return nil, err
	}
	res := &webrtcResult{Source: "testsrc (320x240, 30 fps, a key frame every second)", Warmup: o.warmup.String(), When: time.Now().UTC()}
	next := time.Now()
	for i := 0; i < o.samples; i++ {
		next = next.Add(time.Second)
		time.Sleep(time.Until(next))
		last, err := pagetest.Eval[*float64](b, `window.__lat.last`)
		if err != nil {
			return nil, err
		}
		if last == nil {
			return nil, fmt.Errorf("reading %d: no frame shown with an RTP timestamp", i)
		}
		res.Latency = append(res.Latency, *last)
	}
	if res.Frames, err = pagetest.Eval[[]float64](b, `window.__lat.frames`); err != nil {
		return nil, err
	}
	if res.Stats, err = b.WebRTC(); err != nil {
		return nil, err
	}
	res.JitterBuffer = res.Stats.JitterBuffer
	if errs := b.PageErrors(); len(errs) > 0 {
		return nil, fmt.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
	return res, nil
}

func (r *webrtcResult) markdown(w io.Writer) {
	row := func(name string, v []float64) {
		fmt.Fprintf(w, "| %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms |\n", name, 1000*percentile(v, 50), 1000*percentile(v, 95), 1000*slices.Min(v), 1000*slices.Max(v))
	}
	fmt.Fprintf(w, "| measured | p50 | p95 | min | max |\n|---|---|---|---|---|\n")
	row("**latency**: the clock − the shown frame's producer time, read every second", r.Latency)
	row("the same, every frame shown", r.Frames)
	fmt.Fprintf(w, "\n%d readings, one a second, and %d frames, after %s of playing; source %s. "+
		"Chromium: %.0f frames decoded, %.0f dropped, %.0f packets lost; a frame waits %.0f ms in its jitter buffer on average (getStats); codec %s; "+
		"the server's candidate %s.\n",
		len(r.Latency), len(r.Frames), r.Warmup, r.Source, r.Stats.FramesDecoded, r.Stats.FramesDropped, r.Stats.PacketsLost,
		1000*r.JitterBuffer, r.Stats.Codec, r.Stats.Candidate)
}
