package e2e

import (
	"html"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

var playbackRefRE = regexp.MustCompile(`(?m)(get(?:HLSMediaPlaylist\.m3u8|MP4InitFragment\.mp4|MP4MediaFragment\.mp4|TSFragment\.ts)\?[^"\s]+)`)

// playbackURLs is every URL a player of a session fetches: the session's
// own (master playlist or manifest), and the playlists, initialization and
// media segments it names, one level down and, for HLS, two.
func playbackURLs(t *testing.T, session string) []string {
	t.Helper()
	urls := []string{session}
	seen := map[string]bool{session: true}
	for i := 0; i < len(urls) && i < 64; i++ {
		if !strings.Contains(urls[i], ".m3u8") && !strings.Contains(urls[i], ".mpd") {
			continue
		}
		for _, ref := range playbackRefRE.FindAllString(string(httpGet(t, urls[i])), -1) {
			u := resolve(t, urls[i], html.UnescapeString(ref))
			if !seen[u] {
				seen[u] = true
				urls = append(urls, u)
			}
		}
	}
	return urls
}

// TestHLSSessionOfRecreatedStream: HLS (fMP4 and MPEG-TS, ON_DEMAND and
// LIVE) and DASH sessions of a stream that is then deleted and created
// again under its name, with other video in the same time range, never
// serve the new stream's data. Through the real binary, the AWS CLI and
// ffmpeg: while the stream is DELETING and after it is created again, every
// playlist, manifest and segment URL of the old sessions answers 404
// ResourceNotFoundException and ffmpeg cannot play them; a new session
// plays the new video frame for frame.
func TestHLSSessionOfRecreatedStream(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	put := func(src string) {
		t.Helper()
		if out, errOut, code := kvsgoCmd(t, nil, "put", "--stream", "cam", "--source", src, "--endpoint", srv.url, "--fast", "--quiet"); code != 0 {
			t.Fatalf("kvsgo put %s: exit %d\n%s\n%s", src, code, out, errOut)
		}
	}
	first, second := mediatest.Fixture(t, "h264-aac.mkv"), mediatest.Fixture(t, "h264-baseline.h264")
	put(first)
	firstFrames := mediatest.FrameMD5(t, first, nil, "", "v:0")
	secondFrames := mediatest.FrameMD5(t, second, nil, "h264", "v:0")
	if len(firstFrames) == 0 || len(secondFrames) == 0 || slices.Equal(firstFrames, secondFrames) {
		t.Fatalf("the fixtures decode to %d and %d frames, or the same ones", len(firstFrames), len(secondFrames))
	}

	hls := func(args ...string) string {
		return sessionURL(t, srv.url, append([]string{"kinesis-video-archived-media", "get-hls-streaming-session-url", "--stream-name", "cam"}, args...)...)
	}
	sessions := map[string]string{
		"HLS fMP4 ON_DEMAND": hls("--playback-mode", "ON_DEMAND", "--hls-fragment-selector", rangeArg("PRODUCER_TIMESTAMP")),
		"HLS TS ON_DEMAND":   hls("--playback-mode", "ON_DEMAND", "--container-format", "MPEG_TS", "--hls-fragment-selector", rangeArg("SERVER_TIMESTAMP")),
		"HLS LIVE":           hls("--playback-mode", "LIVE"),
		"DASH ON_DEMAND": sessionURL(t, srv.url, "kinesis-video-archived-media", "get-dash-streaming-session-url", "--stream-name", "cam",
			"--playback-mode", "ON_DEMAND", "--dash-fragment-selector", rangeArg("PRODUCER_TIMESTAMP")),
	}
	if got := mediatest.FrameMD5(t, sessions["HLS fMP4 ON_DEMAND"], nil, "", "v:0"); !slices.Equal(got, firstFrames) {
		t.Fatalf("before the deletion the session plays %d frames, the first video has %d, or they differ", len(got), len(firstFrames))
	}
	var old []string
	for name, u := range sessions {
		urls := playbackURLs(t, u)
		if len(urls) < 3 {
			t.Fatalf("%s: a player fetches only %v", name, urls)
		}
		old = append(old, urls...)
	}
	gone := func(when string) {
		t.Helper()
		for _, u := range old {
			code, h := httpStatus(t, u)
			if typ := (apiResult{Header: h}).errorType(); code != 404 || typ != "ResourceNotFoundException" {
				t.Fatalf("%s, an old session's %s answers %d %s", when, u[strings.Index(u, "/v1/")+4:strings.Index(u, "?")], code, typ)
			}
		}
	}

	var desc struct{ StreamInfo streamInfo }
	jsonOf(t, awsCLI(t, srv.url, "kinesisvideo", "describe-stream", "--stream-name", "cam"), &desc)
	awsCLI(t, srv.url, "kinesisvideo", "delete-stream", "--stream-arn", desc.StreamInfo.StreamARN)
	gone("right after DeleteStream")
	if e := awsCLIErr(t, srv.url, "kinesis-video-archived-media", "get-hls-streaming-session-url", "--stream-name", "cam",
		"--playback-mode", "ON_DEMAND", "--hls-fragment-selector", rangeArg("PRODUCER_TIMESTAMP")); !strings.Contains(e, "ResourceNotFoundException") {
		t.Fatalf("a new session of a deleted stream: %s", e)
	}
	waitStatus(t, srv.url, "cam", "") // DELETING is over
	awsCLI(t, srv.url, "kinesisvideo", "create-stream", "--stream-name", "cam", "--data-retention-in-hours", "24")
	put(second) // waits for ACTIVE
	gone("after the stream was created again and fed")
	if _, code, _ := mediatest.Exec(t, nil, "ffmpeg", "-v", "error", "-i", sessions["HLS fMP4 ON_DEMAND"], "-f", "null", "-"); code == 0 {
		t.Fatal("ffmpeg played an old session of the re-created stream")
	}

	fresh := hls("--playback-mode", "ON_DEMAND", "--hls-fragment-selector", rangeArg("PRODUCER_TIMESTAMP"))
	if got := mediatest.FrameMD5(t, fresh, nil, "", "v:0"); !slices.Equal(got, secondFrames) {
		t.Fatalf("a new session plays %d frames, the new video has %d, or they differ", len(got), len(secondFrames))
	}
}
