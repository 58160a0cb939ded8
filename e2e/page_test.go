package e2e

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/pagetest"
)

// TestPageLivePlayerInChromium: `kvsgo serve` with credentials, `kvsgo
// put` streaming the test clip live. After a login, the page's live player
// over HLS (?live=hls; hls.js) plays; over twenty fragments it loads one media segment per
// fragment, each the next media sequence number, the fragments in the
// order ListFragments has them, none skipped or repeated, their
// PROGRAM-DATE-TIMEs a fragment's duration apart.
func TestPageLivePlayerInChromium(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	srv := startServe(t, serveArgs(t.TempDir())...)
	put := startProc(t, binary, "put", "--quiet", "--stream", "live", "--source", "testsrc", "--endpoint", srv.url)
	defer func() { _ = put.stop() }()
	waitFragments(t, srv.url, "live", 2)

	b := startBrowser(t, chromium)
	if err := b.Login(srv.url, creds.AccessKeyID, creds.SecretAccessKey); err != nil {
		t.Fatalf("login: %v", err)
	}
	// Live over HLS: the page would choose WebRTC (webrtc_test.go).
	if err := b.Do(30*time.Second, chromedp.Navigate(srv.url+"/?live=hls")); err != nil {
		t.Fatal(err)
	}
	card := `.card[data-stream="live"] `
	if err := b.Poll(`(() => { const v = document.querySelector('`+card+`video'); return !!v && v.currentTime > 1 && v.videoWidth > 0; })()`, 60*time.Second); err != nil {
		t.Fatalf("the live player does not play: %v\n%s", err, pageState(b, card))
	}
	mainFrags := func() []pagetest.Fragment {
		t.Helper()
		rec, err := b.HLS()
		if err != nil {
			t.Fatal(err)
		}
		var out []pagetest.Fragment
		for _, f := range rec.Fragments {
			if f.Type == "main" {
				out = append(out, f)
			}
		}
		return out
	}
	start := len(mainFrags())
	deadline := time.Now().Add(60 * time.Second)
	for len(mainFrags()) < start+20 {
		if time.Now().After(deadline) {
			t.Fatalf("the live player loaded %d fragments in 60 s, want 20\n%s", len(mainFrags())-start, pageState(b, card))
		}
		time.Sleep(500 * time.Millisecond) // between looks at a live player, not a stand-in for a condition
	}
	frags := mainFrags()
	rec, err := b.HLS()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Players != 1 {
		t.Fatalf("the page made %d players for one live stream", rec.Players)
	}
	var numbers []string
	for i, f := range frags {
		numbers = append(numbers, fragmentParam(t, f.URL))
		if i == 0 {
			continue
		}
		prev := frags[i-1]
		if f.SN != prev.SN+1 {
			t.Fatalf("hls.js loaded media sequence number %d after %d: a fragment was skipped or repeated\n%v", f.SN, prev.SN, frags)
		}
		if f.PDT == 0 || math.Abs(f.PDT-prev.PDT-prev.Dur*1000) > 50 {
			t.Fatalf("segment %d: PROGRAM-DATE-TIME %.0f, the one before %.0f + %.3f s", f.SN, f.PDT, prev.PDT, prev.Dur)
		}
	}
	listed := listFragmentNumbers(t, srv.url, "live")
	first := slices.Index(listed, numbers[0])
	if first < 0 || first+len(numbers) > len(listed) || !slices.Equal(listed[first:first+len(numbers)], numbers) {
		t.Fatalf("hls.js loaded fragments %v; the stream has %v", numbers, listed)
	}
	// Live, not from the beginning: the frame on screen is seconds old.
	if behind, err := pagetest.Eval[float64](b, `(Date.now() - window.__kvsgoHLS.players[0].playingDate.getTime()) / 1000`); err != nil || behind > 10 || behind < 0 {
		t.Fatalf("the live player shows a frame %.1f s old (%v)", behind, err)
	}
	if when, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.when').textContent`); err != nil || !strings.HasSuffix(when, "s behind live") {
		t.Fatalf("the player does not say how far behind live it is: %q %v", when, err)
	}
	saveScreenshot(t, b, "live-page.png")
	noPlayerErrors(t, rec)
	noPageErrors(t, b)
}

// TestPageReplayAndClipInChromium: a stream with video and AAC is stored;
// on the page a user drags across its timeline, replays the range (hls.js,
// ON_DEMAND) and downloads it as a clip. The replay loads exactly the
// fragments ListFragments gives for the range and plays them to the end;
// the clip is an MP4 whose frames are those fragments' frames (framemd5
// against GetMediaForFragmentList of the same fragments).
func TestPageReplayAndClipInChromium(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	srv := startServe(t, serveArgs(t.TempDir())...)
	src := filepath.Join(t.TempDir(), "porch.mkv")
	mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "8", "-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "matroska", src)
	putFile(t, srv.url, "porch", src)

	b := startBrowser(t, chromium)
	if err := b.Login(srv.url, creds.AccessKeyID, creds.SecretAccessKey); err != nil {
		t.Fatalf("login: %v", err)
	}
	card := `.card[data-stream="porch"] `
	// The producer has gone: the page says so, and offers the recording.
	if err := b.Poll(`(() => { const c = document.querySelector('`+card+`'); return !!c && c.querySelector(".t-first").textContent.length > 0 &&
		c.querySelector(".overlay-text").textContent.startsWith("Not streaming"); })()`, 30*time.Second); err != nil {
		t.Fatalf("the page does not show the stored stream: %v\n%s", err, pageState(b, card))
	}
	box, err := pagetest.Eval[[]float64](b, `(() => { const r = document.querySelector('`+card+`.timeline').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
	if err != nil {
		t.Fatal(err)
	}
	y := box[1] + box[3]/2
	if err := b.Drag(box[0]+box[2]*0.3, y, box[0]+box[2]*0.75, y); err != nil {
		t.Fatalf("dragging across the timeline: %v", err)
	}
	sel, err := pagetest.Eval[[]string](b, `(() => { const c = document.querySelector('`+card+`'); return [c.dataset.selStart || "", c.dataset.selEnd || ""]; })()`)
	if err != nil || sel[0] == "" {
		t.Fatalf("no range selected: %v %v", sel, err)
	}
	selStart, _ := strconv.ParseInt(sel[0], 10, 64)
	selEnd, _ := strconv.ParseInt(sel[1], 10, 64)
	want := listFragmentsInRange(t, srv.url, "porch", selStart, selEnd)
	if len(want) < 2 {
		t.Fatalf("the selection %d–%d holds %d fragments; the test wants a few", selStart, selEnd, len(want))
	}

	// Replay: a second player, ON_DEMAND, plays the range to its end.
	if err := b.Do(10*time.Second, chromedp.Click(chromedp.CSS(card+".replay"))); err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(`(() => { const v = document.querySelector('`+card+`video'); return window.__kvsgoHLS.players.length === 1 &&
		v.videoWidth > 0 && !v.error && v.duration > 1 && (v.ended || v.currentTime >= v.duration - 0.2); })()`, 60*time.Second); err != nil {
		t.Fatalf("the replay does not play to its end: %v\n%s", err, pageState(b, card))
	}
	// One stretch of media: the segments join up.
	if ranges, err := pagetest.Eval[int](b, `document.querySelector('`+card+`video').buffered.length`); err != nil || ranges != 1 {
		t.Fatalf("the replay's buffer has %d stretches: gaps between segments (%v)\n%s", ranges, err, pageState(b, card))
	}
	rec, err := b.HLS()
	if err != nil {
		t.Fatal(err)
	}
	var played []string
	for _, f := range rec.Fragments {
		if f.Type == "main" && !slices.Contains(played, fragmentParam(t, f.URL)) {
			played = append(played, fragmentParam(t, f.URL))
		}
	}
	if !slices.Equal(played, want) {
		t.Fatalf("the replay loaded fragments %v; ListFragments gives %v for the range", played, want)
	}
	if when, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.when').textContent`); err != nil || !strings.HasPrefix(when, "recorded ") {
		t.Fatalf("the replay does not say when it was recorded: %q %v", when, err)
	}
	saveScreenshot(t, b, "replay-page.png")

	// The clip: the page downloads an MP4 of the range.
	dir := t.TempDir()
	if err := b.AllowDownloads(dir); err != nil {
		t.Fatal(err)
	}
	if err := b.Do(10*time.Second, chromedp.Click(chromedp.CSS(card+".clip"))); err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(`document.querySelector('`+card+`.action-msg').textContent.startsWith("Clip saved")`, 60*time.Second); err != nil {
		msg, _ := pagetest.Eval[string](b, `document.querySelector('`+card+`.action-msg').textContent`)
		t.Fatalf("the clip was not saved: %v (%q)", err, msg)
	}
	clip := waitDownload(t, dir, "porch-", ".mp4")
	streams := mediatest.Probe(t, clip, nil, "")
	if len(streams) != 2 || streams[0].CodecName != "h264" || streams[1].CodecName != "aac" {
		t.Fatalf("the clip's streams: %+v", streams)
	}
	// The same fragments as Matroska, through the real API and the AWS CLI.
	mkv := filepath.Join(t.TempDir(), "range.mkv")
	awsCLI(t, srv.url, append([]string{"kinesis-video-archived-media", "get-media-for-fragment-list", mkv, "--stream-name", "porch", "--fragments"}, want...)...)
	wantV := mediatest.FrameMD5(t, mkv, nil, "", "v:0")
	if got := mediatest.FrameMD5(t, clip, nil, "", "v:0"); len(got) == 0 || !slices.Equal(got, wantV) {
		t.Fatalf("the clip decodes to %d video frames; the range's fragments hold %d, or they differ", len(got), len(wantV))
	}
	if got, want := mediatest.PacketMD5(t, clip, nil, "", "a:0"), mediatest.PacketMD5(t, mkv, nil, "", "a:0"); len(got) == 0 || !slices.Equal(got, want) {
		t.Fatalf("the clip has %d audio packets; the range's fragments hold %d, or their bytes differ", len(got), len(want))
	}
	noPlayerErrors(t, rec)
	noPageErrors(t, b)
}

// listFragmentsInRange lists the fragments whose producer timestamps fall
// in [start, end] (Unix ms), in order. (Not with the AWS CLI: botocore
// sends whole seconds.)
func listFragmentsInRange(t *testing.T, endpoint, stream string, start, end int64) []string {
	t.Helper()
	var listed struct {
		Fragments []struct{ FragmentNumber string }
	}
	in := map[string]any{"StreamName": stream, "FragmentSelector": map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange": map[string]any{"StartTimestamp": float64(start) / 1000, "EndTimestamp": float64(end) / 1000}}}
	if code := call(t, endpoint, "/listFragments", in, &listed); code != 200 {
		t.Fatalf("listFragments: %d", code)
	}
	var nums []string
	for _, f := range listed.Fragments {
		nums = append(nums, f.FragmentNumber)
	}
	// Fragment numbers are decimal strings; clients must sort them.
	slices.SortFunc(nums, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return nums
}

// waitDownload waits for a finished download named prefix…suffix in dir.
func waitDownload(t *testing.T, dir, prefix, suffix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) && strings.HasSuffix(e.Name(), suffix) {
				return filepath.Join(dir, e.Name())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s…%s downloaded into %s: %v", prefix, suffix, dir, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func saveScreenshot(t *testing.T, b *pagetest.Browser, name string) {
	t.Helper()
	png, err := b.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// TestPageRoutesNeedLogin: with credentials, the page's HLS and clip
// routes refuse a request without a login (a SigV4 signature is not a
// login), and answer one with it.
func TestPageRoutesNeedLogin(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	putFixture(t, srv.url, "porch", "h264-aac.mkv")
	start, end := time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli()
	hls := func(cookie *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.url+"/ui/api/streams/porch/hls", strings.NewReader(fmt.Sprintf(`{"mode":"ON_DEMAND","start":%d,"end":%d}`, start, end)))
		req.Header.Set("Content-Type", "application/json")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		return statusOf(t, req)
	}
	clip := func(cookie *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/ui/api/streams/porch/clip?start=%d&end=%d", srv.url, start, end), nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		return statusOf(t, req)
	}
	if code := hls(nil); code != http.StatusUnauthorized {
		t.Fatalf("an HLS session for the page without a login: %d", code)
	}
	if code := clip(nil); code != http.StatusUnauthorized {
		t.Fatalf("a clip for the page without a login: %d", code)
	}
	signed, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/ui/api/streams/porch/clip?start=%d&end=%d", srv.url, start, end), nil)
	sign(t, signed, "UNSIGNED-PAYLOAD")
	if code := statusOf(t, signed); code != http.StatusUnauthorized {
		t.Fatalf("a clip for the page with a SigV4 signature but no login: %d", code)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(srv.url+"/ui/login", url.Values{"access_key": {creds.AccessKeyID}, "secret_key": {creds.SecretAccessKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	if code := hls(cookie); code != http.StatusOK {
		t.Fatalf("an HLS session for the page after login: %d", code)
	}
	if code := clip(cookie); code != http.StatusOK {
		t.Fatalf("a clip for the page after login: %d", code)
	}
}

func statusOf(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
