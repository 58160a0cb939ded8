package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/pagetest"
)

// TestPageLiveWebRTCInChromium: `kvsgo serve` with credentials, `kvsgo
// put` streaming the test clip live. After a login, the page plays the
// stream over WebRTC (WHEP): its RTCPeerConnection is connected, to the
// server's loopback host candidate; the <video> advances with a picture;
// getStats() counts H.264 frames decoded, more and more, starting at a key
// frame, none lost; the player is labelled WebRTC, shows how far behind
// live it is, and made no HLS player.
func TestPageLiveWebRTCInChromium(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	srv := startServe(t, serveArgs(t.TempDir())...)
	put := startProc(t, binary, "put", "--quiet", "--stream", "live", "--source", "testsrc", "--endpoint", srv.url)
	defer func() { _ = put.stop() }()
	waitFragments(t, srv.url, "live", 1)

	b := startBrowser(t, chromium)
	if err := b.Login(srv.url, creds.AccessKeyID, creds.SecretAccessKey); err != nil {
		t.Fatalf("login: %v", err)
	}
	card := `.card[data-stream="live"] `
	if err := b.Poll(`(() => { const c = document.querySelector('`+card+`'); const v = c && c.querySelector("video");
		return !!v && c.dataset.transport === "webrtc" && v.currentTime > 1 && v.videoWidth > 0 && c.querySelector(".overlay").hidden; })()`, 60*time.Second); err != nil {
		t.Fatalf("the page does not play the stream over WebRTC: %v\n%s\n%s", err, pageState(b, card), liveOver(b, card))
	}
	first, err := b.WebRTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WebRTC: %+v", first)
	if first.ConnectionState != "connected" {
		t.Fatalf("the RTCPeerConnection is %q, not connected", first.ConnectionState)
	}
	if !strings.HasPrefix(first.Candidate, "127.0.0.1:") || !strings.HasSuffix(first.Candidate, " host") {
		t.Fatalf("the server's end of the connection is %q, want its loopback host candidate", first.Candidate)
	}
	if first.Codec != "video/H264" || first.FrameWidth != 320 || first.KeyFrames < 1 {
		t.Fatalf("the browser decodes %q at width %v, %v key frames", first.Codec, first.FrameWidth, first.KeyFrames)
	}
	// Three more seconds of video: 30 fps, so well over 60 more frames
	// decoded, and currentTime moves on.
	t0, err := pagetest.Eval[float64](b, `document.querySelector('`+card+`video').currentTime`)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(`document.querySelector('`+card+`video').currentTime > `+strconv.FormatFloat(t0+3, 'f', 3, 64), 30*time.Second); err != nil {
		t.Fatalf("the <video> stopped at %.1f s: %v\n%s", t0, err, pageState(b, card))
	}
	later, err := b.WebRTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WebRTC 3 s later: %+v", later)
	if later.FramesDecoded-first.FramesDecoded < 60 {
		t.Fatalf("%v frames decoded in 3 s of playing (from %v to %v), want over 60", later.FramesDecoded-first.FramesDecoded, first.FramesDecoded, later.FramesDecoded)
	}
	if later.PacketsLost > 0 || later.Connections != 1 {
		t.Fatalf("%v packets lost on loopback, %d connections for one player", later.PacketsLost, later.Connections)
	}
	if label, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.transport').textContent`); err != nil || label != "WebRTC" {
		t.Fatalf("the player's label is %q (%v), want WebRTC", label, err)
	}
	when, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.when').textContent`)
	if err != nil || !strings.HasSuffix(when, "s behind live") {
		t.Fatalf("the player does not say how far behind live it is: %q %v", when, err)
	}
	// Live, not from the stored fragments: the frame on screen is recent.
	if behind, err := pagetest.Eval[float64](b, `parseFloat(document.querySelector('`+card+`.when').textContent)`); err != nil || behind > 3 {
		t.Fatalf("the WebRTC player shows a frame %.2f s old (%v)", behind, err)
	}
	if n, err := pagetest.Eval[int](b, `window.__kvsgoHLS.players.length`); err != nil || n != 0 {
		t.Fatalf("the page made %d hls.js players beside WebRTC (%v)", n, err)
	}
	saveScreenshot(t, b, "live-webrtc.png")
	noPageErrors(t, b)
}

// TestPageBFramesFallBackToHLS: a live stream with B-frames cannot go over
// WebRTC (browsers show its frames in arrival order); serve refuses the
// WHEP offer with the reason, and the page plays the stream over HLS,
// labelled HLS, saying why.
func TestPageBFramesFallBackToHLS(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	srv := startServe(t, serveArgs(t.TempDir())...)
	// x264's defaults have B-frames; -re keeps it live.
	put := startProc(t, binary, "put", "--quiet", "--stream", "bframes", "--endpoint", srv.url, "--source",
		"exec:ffmpeg -v error -re -f lavfi -i testsrc2=size=320x240:rate=30 -c:v libx264 -bf 2 -g 30 -pix_fmt yuv420p -f h264 -")
	defer func() { _ = put.stop() }()
	waitFragments(t, srv.url, "bframes", 1)

	b := startBrowser(t, chromium)
	if err := b.Login(srv.url, creds.AccessKeyID, creds.SecretAccessKey); err != nil {
		t.Fatalf("login: %v", err)
	}
	card := `.card[data-stream="bframes"] `
	if err := b.Poll(`(() => { const c = document.querySelector('`+card+`'); const v = c && c.querySelector("video");
		return !!v && c.dataset.transport === "hls" && v.currentTime > 1 && v.videoWidth > 0 && c.querySelector(".overlay").hidden; })()`, 60*time.Second); err != nil {
		t.Fatalf("the page does not play the B-frame stream over HLS: %v\n%s\n%s", err, pageState(b, card), liveOver(b, card))
	}
	if label, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.transport').textContent`); err != nil || label != "HLS" {
		t.Fatalf("the player's label is %q (%v), want HLS", label, err)
	}
	if why := liveOver(b, card); !strings.Contains(why, "B-frames") {
		t.Fatalf("the page does not say why not WebRTC: %q", why)
	}
	saveScreenshot(t, b, "live-bframes-hls.png")
	noPageErrors(t, b)
}

func liveOver(b *pagetest.Browser, card string) string {
	s, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.live-over').textContent`)
	if err != nil {
		return err.Error()
	}
	return "live view: " + s
}

// TestPageH265Live: a live H.265 stream (x265 without B-frames). Serve
// sends H.265 over WebRTC to a browser whose offer has it, and refuses the
// others with the reason. Headless Chromium here (software decoding only)
// does not offer H.265 in WebRTC — RTCRtpReceiver.getCapabilities says
// so, and the test logs it — so the page must fall back to HLS, labelled
// HLS, saying why; where the browser does offer it, the page plays it over
// WebRTC and the browser decodes video/H265.
func TestPageH265Live(t *testing.T) {
	t.Parallel()
	chromium := mediatest.Tool(t, "chromium")
	srv := startServe(t, serveArgs(t.TempDir())...)
	put := startProc(t, binary, "put", "--quiet", "--stream", "hevc", "--endpoint", srv.url, "--source",
		"exec:ffmpeg -v error -re -f lavfi -i testsrc2=size=320x240:rate=30 -c:v libx265 -x265-params bframes=0:keyint=30:log-level=error -pix_fmt yuv420p -f hevc -")
	defer func() { _ = put.stop() }()
	waitFragments(t, srv.url, "hevc", 1)

	b := startBrowser(t, chromium)
	if err := b.Login(srv.url, creds.AccessKeyID, creds.SecretAccessKey); err != nil {
		t.Fatalf("login: %v", err)
	}
	offers, err := pagetest.Eval[bool](b, `RTCRtpReceiver.getCapabilities("video").codecs.some(c => c.mimeType.toLowerCase() === "video/h265")`)
	if err != nil {
		t.Fatal(err)
	}
	mse, _ := pagetest.Eval[bool](b, `!!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L93.B0"')`)
	t.Logf("this Chromium offers H.265 in WebRTC: %v; plays H.265 from MSE (HLS): %v", offers, mse)
	card := `.card[data-stream="hevc"] `
	if offers {
		if err := b.Poll(`(() => { const c = document.querySelector('`+card+`'); const v = c && c.querySelector("video");
			return !!v && c.dataset.transport === "webrtc" && v.currentTime > 1 && v.videoWidth > 0; })()`, 60*time.Second); err != nil {
			t.Fatalf("the page does not play the H.265 stream over WebRTC: %v\n%s\n%s", err, pageState(b, card), liveOver(b, card))
		}
		st, err := b.WebRTC()
		if err != nil || st.Codec != "video/H265" || st.KeyFrames < 1 {
			t.Fatalf("the browser decodes %+v (%v), want video/H265 from a key frame", st, err)
		}
		return
	}
	if err := b.Poll(`(() => { const c = document.querySelector('`+card+`');
		return !!c && c.dataset.transport === "hls" && c.querySelector(".live-over").textContent.includes("H.265"); })()`, 60*time.Second); err != nil {
		t.Fatalf("the page does not fall back to HLS for the H.265 stream: %v\n%s\n%s", err, pageState(b, card), liveOver(b, card))
	}
	if label, err := pagetest.Eval[string](b, `document.querySelector('`+card+`.transport').textContent`); err != nil || label != "HLS" {
		t.Fatalf("the player's label is %q (%v), want HLS", label, err)
	}
	if why := liveOver(b, card); !strings.Contains(why, "this browser does not offer H.265 over WebRTC; the page plays it over HLS") {
		t.Fatalf("the page does not say why not WebRTC: %q", why)
	}
	if mse {
		// A browser that decodes H.265 from MSE plays it over HLS.
		if err := b.Poll(`(() => { const v = document.querySelector('`+card+`video'); return !!v && v.currentTime > 1 && v.videoWidth > 0; })()`, 60*time.Second); err != nil {
			t.Fatalf("the page does not play the H.265 stream over HLS: %v\n%s", err, pageState(b, card))
		}
	} else if err := b.Poll(`document.querySelector('`+card+`.overlay-text').textContent.startsWith("This browser cannot decode this video")`, 30*time.Second); err != nil {
		// Nor over HLS: the player says so, rather than "Connecting…".
		t.Fatalf("the player does not say the browser cannot decode H.265: %v\n%s", err, pageState(b, card))
	}
	t.Logf("%s\n%s", pageState(b, card), liveOver(b, card))
	saveScreenshot(t, b, "live-h265-hls.png")
	noPageErrors(t, b)
}
