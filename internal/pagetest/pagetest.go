// Package pagetest drives the page of `kvsgo serve` in headless Chromium
// (Debian's chromium, through the DevTools protocol with chromedp), for
// the e2e tests and scripts/latency. It records what a user would call
// broken (uncaught exceptions, console errors) and, from the page's first
// script on, every hls.js player the page makes (the fragments it loads
// and the errors it reports) and every RTCPeerConnection.
package pagetest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	tab    context.Context
	cancel []context.CancelFunc

	mu     sync.Mutex
	errors []string
}

// Start starts Chromium (the program at path) with a window of the given
// size; Close stops it.
func Start(path string, width, height int) (*Browser, error) {
	if _, err := exec.LookPath(path); err != nil {
		return nil, fmt.Errorf("chromium %q: %w", path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// A background tab's timers and media must run as a visible one's.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, tcancel := chromedp.NewContext(actx)
	b := &Browser{tab: tab, cancel: []context.CancelFunc{tcancel, acancel}}
	// Listen starts the browser; its context must have no deadline.
	err := chromedp.Listen(tab, b.event)
	if err == nil {
		_, err = chromedp.Run(tab, chromedp.Action[page.AddScriptToEvaluateOnNewDocumentResult](
			func(ctx context.Context, t *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
				return cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: hlsRecorder + pcRecorder})
			}))
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("starting Chromium: %w", err)
	}
	return b, nil
}

func (b *Browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		b.errors = append(b.errors, (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.errors = append(b.errors, "console.error: "+strings.Join(args, " "))
		}
	}
}

// Close stops the browser.
func (b *Browser) Close() {
	for _, c := range b.cancel {
		c()
	}
}

// PageErrors returns the uncaught exceptions and console errors so far.
func (b *Browser) PageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Do runs actions in the tab, within timeout.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.tab, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression in the page and decodes its value.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.tab, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// Poll waits until a JavaScript expression is true, at most timeout.
func (b *Browser) Poll(expr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(b.tab, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout)))
	return err
}

// Screenshot returns a PNG of the whole page.
func (b *Browser) Screenshot() ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.tab, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
}

// AllowDownloads makes downloads land in dir under the names the page
// gives them.
func (b *Browser) AllowDownloads(dir string) error {
	return b.Do(10*time.Second, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir})
		return err
	}))
}

// Drag presses the left mouse button at (x1, y1), moves to (x2, y2) in
// steps, and releases it there (page coordinates in CSS pixels).
func (b *Browser) Drag(x1, y1, x2, y2 float64) error {
	steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y1),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x1, y1, chromedp.ButtonLeft)}
	for i := 1; i <= 10; i++ {
		f := float64(i) / 10
		steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1+(x2-x1)*f, y1+(y2-y1)*f, chromedp.ButtonLeft))
	}
	steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x2, y2, chromedp.ButtonLeft))
	return b.Do(10*time.Second, steps...)
}

// Login signs in on the page's login form with an access key and secret
// and waits for the page of streams.
func (b *Browser) Login(base, key, secret string) error {
	base = strings.TrimSuffix(base, "/")
	return b.Do(30*time.Second,
		chromedp.Navigate(base+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="secret_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="access_key"]`), key),
		chromedp.SendKeys(chromedp.CSS(`input[name="secret_key"]`), secret),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`#streams`)))
}

// Fragment is one fragment an hls.js player loaded.
type Fragment struct {
	Player int     `json:"player"` // the page's players, numbered from 0 as made
	Type   string  `json:"type"`   // main (video) or audio
	SN     int64   `json:"sn"`     // media sequence number
	URL    string  `json:"url"`
	PDT    float64 `json:"pdt"` // PROGRAM-DATE-TIME, Unix ms (0 if none)
	Dur    float64 `json:"dur"` // duration, seconds
	At     float64 `json:"at"`  // when it was loaded, Unix ms
}

// PlayerError is an error an hls.js player reported.
type PlayerError struct {
	Player  int    `json:"player"`
	Type    string `json:"type"`
	Details string `json:"details"`
	Fatal   bool   `json:"fatal"`
	Reason  string `json:"reason"`
	At      int64  `json:"at"`
}

// Record is what the page's hls.js players did so far.
type Record struct {
	Players   int           `json:"players"`
	Fragments []Fragment    `json:"frags"`
	Errors    []PlayerError `json:"errors"`
}

// HLS returns what the page's hls.js players did so far.
func (b *Browser) HLS() (Record, error) {
	r, err := Eval[Record](b, `window.__kvsgoHLS ? {players: window.__kvsgoHLS.players.length, frags: window.__kvsgoHLS.frags, errors: window.__kvsgoHLS.errors} : null`)
	if err == nil && r.Players == 0 && r.Fragments == nil {
		return r, errors.New("the page has no hls.js players (is it the page of kvsgo serve?)")
	}
	return r, err
}

// hlsRecorder runs before the page's scripts: when hls.js defines
// window.Hls, it puts a subclass in its place that records every player
// the page makes (window.__kvsgoHLS.players), each fragment it loads and
// each error it reports, and exposes the players for measurements.
const hlsRecorder = `(() => {
  const rec = { players: [], frags: [], errors: [] };
  window.__kvsgoHLS = rec;
  Object.defineProperty(window, "Hls", {
    configurable: true,
    get() { return undefined; },
    set(Hls) {
      class Recorded extends Hls {
        constructor(config) {
          super(config);
          const player = rec.players.length;
          rec.players.push(this);
          this.on(Hls.Events.FRAG_LOADED, (_, d) => {
            const f = d.frag;
            rec.frags.push({ player, type: String(f.type), sn: typeof f.sn === "number" ? f.sn : -1,
              url: f.url || "", pdt: f.programDateTime || 0, dur: f.duration || 0, at: Date.now() });
          });
          this.on(Hls.Events.ERROR, (_, d) => {
            rec.errors.push({ player, type: String(d.type), details: String(d.details), fatal: !!d.fatal,
              reason: String(d.reason || (d.error && d.error.message) || ""), at: Date.now() });
          });
        }
      }
      Object.defineProperty(window, "Hls", { configurable: true, writable: true, value: Recorded });
    },
  });
})();`

// WebRTCVideo is what a page's newest RTCPeerConnection receives, from
// its getStats() (the inbound video RTP stream).
type WebRTCVideo struct {
	Connections     int     `json:"connections"`     // RTCPeerConnections the page made
	ConnectionState string  `json:"connectionState"` // the newest one's
	FramesDecoded   float64 `json:"framesDecoded"`
	FramesDropped   float64 `json:"framesDropped"`
	PacketsLost     float64 `json:"packetsLost"`
	KeyFrames       float64 `json:"keyFramesDecoded"`
	FrameWidth      float64 `json:"frameWidth"`
	// JitterBuffer is the average time a frame waited in the jitter
	// buffer, s (jitterBufferDelay / jitterBufferEmittedCount).
	JitterBuffer float64 `json:"jitterBuffer"`
	Codec        string  `json:"codec"`
	Candidate    string  `json:"candidate"` // the server's end of the selected candidate pair, "address:port typ"
}

// WebRTC returns what the page's newest RTCPeerConnection receives.
func (b *Browser) WebRTC() (WebRTCVideo, error) {
	ctx, cancel := context.WithTimeout(b.tab, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[WebRTCVideo](`(async () => {
		const pcs = window.__kvsgoPCs || [];
		const pc = pcs.at(-1);
		if (!pc) return {connections: 0};
		const out = {connections: pcs.length, connectionState: pc.connectionState};
		const stats = await pc.getStats();
		const byID = new Map();
		stats.forEach((r) => byID.set(r.id, r));
		stats.forEach((r) => {
			if (r.type === "inbound-rtp" && r.kind === "video") {
				Object.assign(out, {framesDecoded: r.framesDecoded || 0, framesDropped: r.framesDropped || 0, packetsLost: r.packetsLost || 0,
					keyFramesDecoded: r.keyFramesDecoded || 0, frameWidth: r.frameWidth || 0,
					jitterBuffer: r.jitterBufferEmittedCount ? r.jitterBufferDelay / r.jitterBufferEmittedCount : 0});
				const c = byID.get(r.codecId);
				if (c) out.codec = c.mimeType;
			}
			if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
				const rc = byID.get(r.remoteCandidateId);
				if (rc) out.candidate = rc.address + ":" + rc.port + " " + rc.candidateType;
			}
		});
		return out;
	})()`, chromedp.EvalAwaitPromise))
	if err == nil && v.Connections == 0 {
		return v, errors.New("the page made no RTCPeerConnection")
	}
	return v, err
}

// pcRecorder keeps every RTCPeerConnection the page makes in
// window.__kvsgoPCs, for getStats().
const pcRecorder = `(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__kvsgoPCs = [];
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      window.__kvsgoPCs.push(this);
    }
  }
  window.RTCPeerConnection = Recorded;
})();`
