package e2e

import (
	"bufio"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/pagetest"
)

var (
	demoURLRE = regexp.MustCompile(`^http://127\.0\.0\.1:\d+/$`)
	demoDirRE = regexp.MustCompile(`data in (\S+), removed at exit`)
)

// TestDemoInChromium runs `kvsgo demo` as a user does: it prints the
// page's URL as its last line; headless Chromium (Debian's) shows the demo
// stream live and plays it, without page or media errors; Ctrl-C ends the
// demo and removes its data directory.
func TestDemoInChromium(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	cmd := exec.Command(binary, "demo")
	cmd.Env = awsEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuilder{b: &strings.Builder{}}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	// Ctrl-C first, so that a demo a failed test leaves removes its data.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-waited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})

	var mu sync.Mutex
	var lines []string
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if demoURLRE.MatchString(sc.Text()) {
				urlc <- sc.Text()
			}
		}
		exited <- cmd.Wait()
		close(waited)
	}()
	var page string
	select {
	case page = <-urlc:
	case err := <-exited:
		t.Fatalf("kvsgo demo exited: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("kvsgo demo printed no URL:\n%s", stderr.String())
	}
	mu.Lock()
	m := demoDirRE.FindStringSubmatch(strings.Join(lines, "\n"))
	mu.Unlock()
	if m == nil {
		t.Fatalf("the demo does not say where its data is:\n%s", strings.Join(lines, "\n"))
	}
	dataDir := m[1]
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatalf("data directory: %v", err)
	}

	shot := filepath.Join(t.ArtifactDir(), "demo-page.png")
	checkDemoPage(t, chromium, page, shot)

	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("kvsgo demo after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kvsgo demo did not stop on Ctrl-C:\n%s", stderr.String())
	}
	mu.Lock()
	last := lines[len(lines)-1]
	mu.Unlock()
	if last != page {
		t.Fatalf("the last line the demo printed is %q, not the page's URL %q", last, page)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("the data directory %s is still there after the demo: %v", dataDir, err)
	}
	if !strings.Contains(stderr.String(), "removed "+dataDir) {
		t.Fatalf("the demo did not say it removed its data:\n%s", stderr.String())
	}
}

// checkDemoPage opens the page in headless Chromium and checks what a user
// sees: the demo stream live, its description, its timeline, and the
// player playing it (time advancing past 3 s, a picture, no media error);
// it saves a screenshot at shot.
func checkDemoPage(t *testing.T, chromium, page, shot string) {
	t.Helper()
	b := startBrowser(t, chromium)
	card := `.card[data-stream="demo"] `
	text := func(sel string) string {
		t.Helper()
		s, err := pagetest.Eval[string](b, `document.querySelector('`+card+sel+`').textContent`)
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
	poll := func(what, expr string, timeout time.Duration) {
		t.Helper()
		if err := b.Poll(expr, timeout); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, pageState(b, card))
		}
	}
	if err := b.Do(60*time.Second, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(card+".badge.live"))); err != nil {
		t.Fatalf("the page does not show the demo stream live: %v", err)
	}
	// The stats fill in with the stream list's refresh.
	poll("the stream's video is not described", `document.querySelector('`+card+`.video').textContent.startsWith("H.264")`, 20*time.Second)
	if name, badge, video := text(".name"), text(".badge"), text(".video"); name != "demo" || strings.ToLower(badge) != "live" || video != "H.264 320×240" {
		t.Fatalf("the card shows %q %q %q", name, badge, video)
	}
	if rate := text(".bitrate"); !strings.HasSuffix(rate, "bit/s") {
		t.Fatalf("bitrate %q", rate)
	}
	// The player plays: time advances past 3 s with a picture, the
	// overlay gone.
	poll("the player does not play", `(() => { const v = document.querySelector('`+card+`video');
		return v.currentTime > 3 && v.videoWidth > 0 && !v.error && document.querySelector('`+card+`.overlay').hidden; })()`, 60*time.Second)
	// The timeline has what is stored.
	poll("the timeline is empty", `document.querySelector('`+card+`.t-first').textContent.length > 0`, 20*time.Second)
	if n, err := pagetest.Eval[int](b, `document.querySelectorAll('.card').length`); err != nil || n != 1 {
		t.Fatalf("%d cards: %v", n, err)
	}
	png, err := b.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	// Live over WebRTC (webrtc_test.go), or HLS where WebRTC fails.
	switch tr, _ := pagetest.Eval[string](b, `document.querySelector('`+card+`').dataset.transport`); tr {
	case "webrtc":
	case "hls":
		t.Logf("the page plays the demo over HLS: %s", liveOver(b, card))
		rec, err := b.HLS()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Players != 1 {
			t.Fatalf("the page made %d players for one live stream", rec.Players)
		}
		noPlayerErrors(t, rec)
	default:
		t.Fatalf("the player is labelled %q, neither WebRTC nor HLS", tr)
	}
	noPageErrors(t, b)
}

// startBrowser starts headless Chromium for a test and stops it at the
// test's end.
func startBrowser(t *testing.T, chromium string) *pagetest.Browser {
	t.Helper()
	b, err := pagetest.Start(chromium, 1280, 900)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// noPlayerErrors fails on an hls.js error other than a stall or the seek
// over a replay's first gap. A stall (the buffer ran dry and hls.js waited
// or nudged) is the machine's load, not the media. A replay's timeline
// starts at the first frame's decoding time, its first picture a few
// B-frames later (a positive composition offset): hls.js seeks over that
// gap once, at 0. Anything else, fatal or not, is a fault: a gap between
// segments, a decoding error, a playlist or segment that did not load.
func noPlayerErrors(t *testing.T, rec pagetest.Record) {
	t.Helper()
	for _, e := range rec.Errors {
		switch {
		case e.Details == "bufferStalledError" || e.Details == "bufferNudgeOnStall":
			t.Logf("player %d stalled (%s)", e.Player, e.Details)
		case e.Details == "bufferSeekOverHole" && !e.Fatal && startGapRE.MatchString(e.Reason):
			t.Logf("player %d: %s", e.Player, e.Reason)
		default:
			t.Fatalf("player %d: hls.js error %s %s (fatal %v): %s", e.Player, e.Type, e.Details, e.Fatal, e.Reason)
		}
	}
}

// startGapRE is hls.js's seek over a gap at the start of the timeline, of
// less than half a second.
var startGapRE = regexp.MustCompile(`seeking from 0 to 0\.[0-4]\d*$`)

func noPageErrors(t *testing.T, b *pagetest.Browser) {
	t.Helper()
	if errs := b.PageErrors(); len(errs) > 0 {
		t.Fatalf("page errors:\n%s", strings.Join(errs, "\n"))
	}
}

// pageState describes a card's player for a failure message.
func pageState(b *pagetest.Browser, card string) string {
	s, err := pagetest.Eval[string](b, `(() => { const c = document.querySelector('`+card+`'); if (!c) return "no card";
		const v = c.querySelector("video");
		return "overlay: " + (c.querySelector(".overlay").hidden ? "hidden" : c.querySelector(".overlay-text").textContent) +
			"; video: currentTime " + v.currentTime + ", " + v.videoWidth + "x" + v.videoHeight + ", readyState " + v.readyState +
			", error " + (v.error && v.error.message) + "; hls.js errors: " + JSON.stringify(window.__kvsgoHLS && window.__kvsgoHLS.errors); })()`)
	if err != nil {
		return err.Error()
	}
	return s
}

// TestServePageNeedsLogin: `kvsgo serve` with credentials shows its page
// and its API only after a login with them.
func TestServePageNeedsLogin(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("GET / without login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = client.Get(srv.url + "/ui/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the page's API without login: %d", resp.StatusCode)
	}
	resp, err = client.PostForm(srv.url+"/ui/login", url.Values{"access_key": {creds.AccessKeyID}, "secret_key": {creds.SecretAccessKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly {
		t.Fatalf("login: %d %v", resp.StatusCode, cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.url+"/ui/api/streams", nil)
	req.AddCookie(cookies[0])
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the page's API after login: %d", resp.StatusCode)
	}
}
