package e2e

import (
	"bufio"
	"context"
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

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

var (
	demoURLRE = regexp.MustCompile(`^http://127\.0\.0\.1:\d+/$`)
	demoDirRE = regexp.MustCompile(`data in (\S+), removed at exit`)
)

// TestDemoInChromium runs `kvsgo demo` as a user does: it prints the
// page's URL as its last line; headless Chromium (Debian's) shows the demo
// stream live without page errors (and, where HLS is built in, plays it);
// Ctrl-C ends the demo and removes its data directory.
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
	t.Cleanup(func() { _ = cmd.Process.Kill() })

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
// sees; it saves a screenshot at shot.
func checkDemoPage(t *testing.T, chromium, page, shot string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	var mu sync.Mutex
	var pageErrors []string
	// Listen starts the browser; its context must have no deadline.
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			pageErrors = append(pageErrors, (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				pageErrors = append(pageErrors, "console.error: "+strings.Join(args, " "))
			}
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	card := `.card[data-stream="demo"] `
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(card+sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
	poll := func(what, expr string, timeout time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(card+".badge.live"))); err != nil {
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

	if hlsAvailable(t, page) {
		// The player plays: time advances past 3 s with a picture.
		poll("the player does not play", `(() => { const v = document.querySelector('`+card+`video'); return v.currentTime > 3 && v.videoWidth > 0 && !v.error; })()`, 60*time.Second)
	} else {
		// Without HLS in this build the player says so plainly.
		poll("the player shows no message without HLS", `document.querySelector('`+card+`.overlay-text').textContent.includes("HLS")`, 20*time.Second)
		t.Logf("player: %s", text(".overlay-text"))
	}
	// The timeline has what is stored.
	poll("the timeline is empty", `document.querySelector('`+card+`.t-first').textContent.length > 0`, 20*time.Second)
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.card').length`)); err != nil || n != 1 {
		t.Fatalf("%d cards: %v", n, err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	mu.Lock()
	defer mu.Unlock()
	if len(pageErrors) > 0 {
		t.Fatalf("page errors:\n%s", strings.Join(pageErrors, "\n"))
	}
}

// hlsAvailable asks the page's HLS route, as the page does.
func hlsAvailable(t *testing.T, page string) bool {
	t.Helper()
	resp, err := http.Post(page+"ui/api/streams/demo/hls", "application/json", strings.NewReader(`{"mode":"LIVE"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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
