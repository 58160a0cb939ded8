package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/kvs"
)

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// playbackServer is a server with one stream, "porch", holding the
// H.264 + AAC fixture (4 fragments), and a clock the test can move.
func playbackServer(t *testing.T) (*testServer, *testClock) {
	t.Helper()
	c := &testClock{}
	ts := startServer(t, func(cfg *server.Config) { cfg.Now = c.now })
	ts.createStream(t, "porch", 24)
	acks, code := putMedia(t, ts.URL, "porch", bytes.NewReader(mediatest.ReadFixture(t, "h264-aac.mkv")), "RELATIVE")
	if n := countAcks(acks); code != 200 || n[kvs.AckPersisted] != 4 {
		t.Fatalf("PutMedia: %d %v", code, n)
	}
	return ts, c
}

func get(t *testing.T, url string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errorName(resp.Header), b
}

// errorName is the error's name as the SDKs read X-Amzn-ErrorType
// ("Name:namespace").
func errorName(h http.Header) string {
	name, _, _ := strings.Cut(h.Get("X-Amzn-ErrorType"), ":")
	return name
}

func hlsURL(t *testing.T, ts *testServer, in map[string]any) string {
	t.Helper()
	var out struct{ HLSStreamingSessionURL string }
	if code, h := ts.call(t, "/getHLSStreamingSessionURL", in, &out); code != 200 {
		t.Fatalf("GetHLSStreamingSessionURL: %d %s", code, h.Get("X-Amzn-ErrorType"))
	}
	return out.HLSStreamingSessionURL
}

func onDemand(stream string) map[string]any {
	return map[string]any{"StreamName": stream, "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": map[string]any{
		"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange":       map[string]any{"StartTimestamp": time.Now().Add(-time.Hour).Unix(), "EndTimestamp": time.Now().Add(time.Hour).Unix()}}}
}

// TestPlaybackSessionErrors: every malformed or unplayable request gets
// the service's error name.
func TestPlaybackSessionErrors(t *testing.T) {
	ts, _ := playbackServer(t)
	ts.createStream(t, "empty", 24)
	ts.createStream(t, "noretention", 0)
	now := time.Now().Unix()
	rng := func(sel string, start, end int64) map[string]any {
		tr := map[string]any{"StartTimestamp": start}
		if end != 0 {
			tr["EndTimestamp"] = end
		}
		return map[string]any{"FragmentSelectorType": sel, "TimestampRange": tr}
	}
	cases := []struct {
		name string
		path string
		in   map[string]any
		want string
	}{
		{"unknown stream", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "nosuch"}, "ResourceNotFoundException"},
		{"no stream", "/getHLSStreamingSessionURL", map[string]any{}, "InvalidArgumentException"},
		{"bad mode", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "LATER"}, "InvalidArgumentException"},
		{"LIVE with a range", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "HLSFragmentSelector": rng("SERVER_TIMESTAMP", now-60, 0)}, "InvalidArgumentException"},
		{"ON_DEMAND without range", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND"}, "InvalidArgumentException"},
		{"ON_DEMAND without end", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("PRODUCER_TIMESTAMP", now-60, 0)}, "InvalidArgumentException"},
		{"end before start", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("PRODUCER_TIMESTAMP", now, now-60)}, "InvalidArgumentException"},
		{"over 24 hours", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("PRODUCER_TIMESTAMP", now-100000, now)}, "InvalidArgumentException"},
		{"server end in the future", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("SERVER_TIMESTAMP", now-60, now+60)}, "InvalidArgumentException"},
		{"bad selector", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("WALL_CLOCK", now-60, now)}, "InvalidArgumentException"},
		{"bad container", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "ContainerFormat": "MKV"}, "InvalidArgumentException"},
		{"bad discontinuity mode", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "DiscontinuityMode": "SOMETIMES"}, "InvalidArgumentException"},
		{"bad display", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "DisplayFragmentTimestamp": "YES"}, "InvalidArgumentException"},
		{"expires short", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "Expires": 299}, "InvalidArgumentException"},
		{"expires long", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "Expires": 43201}, "InvalidArgumentException"},
		{"max results 0", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "MaxMediaPlaylistFragmentResults": 0}, "InvalidArgumentException"},
		{"max results 5001", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "MaxMediaPlaylistFragmentResults": 5001}, "InvalidArgumentException"},
		{"no retention", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "noretention"}, "NoDataRetentionException"},
		{"LIVE of an empty stream", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "empty"}, "ResourceNotFoundException"},
		{"range without fragments", "/getHLSStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": rng("PRODUCER_TIMESTAMP", 1e9, 1e9+60)}, "ResourceNotFoundException"},
		{"DASH bad mode", "/getDASHStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "SOON"}, "InvalidArgumentException"},
		{"DASH range without fragments", "/getDASHStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": rng("PRODUCER_TIMESTAMP", 1e9, 1e9+60)}, "ResourceNotFoundException"},
		{"clip without selector", "/getClip", map[string]any{"StreamName": "porch"}, "InvalidArgumentException"},
		{"clip range without fragments", "/getClip", map[string]any{"StreamName": "porch", "ClipFragmentSelector": rng("PRODUCER_TIMESTAMP", 1e9, 1e9+60)}, "ResourceNotFoundException"},
		{"clip of an unknown stream", "/getClip", map[string]any{"StreamName": "nosuch", "ClipFragmentSelector": rng("PRODUCER_TIMESTAMP", now-60, now)}, "ResourceNotFoundException"},
		{"clip without retention", "/getClip", map[string]any{"StreamName": "noretention", "ClipFragmentSelector": rng("PRODUCER_TIMESTAMP", now-60, now)}, "NoDataRetentionException"},
	}
	for _, c := range cases {
		code, h := ts.call(t, c.path, c.in, nil)
		if got := errorName(h); code == 200 || got != c.want {
			t.Errorf("%s: %d %s, want %s", c.name, code, got, c.want)
		}
	}
}

// TestPlaybackTokens: segment and playlist requests need the session's
// token, unaltered and unexpired, of the right protocol, for a stream that
// still exists; fragments outside the session are not served.
func TestPlaybackTokens(t *testing.T) {
	ts, clock := playbackServer(t)
	u := hlsURL(t, ts, onDemand("porch"))
	if code, _, _ := get(t, u); code != 200 {
		t.Fatalf("master playlist: %d", code)
	}
	_, _, media := get(t, strings.Replace(u, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1)+"&TrackNumber=1")
	seg := regexp.MustCompile(`(?m)^getMP4MediaFragment\.mp4\?\S+$`).Find(media)
	if seg == nil {
		t.Fatalf("no segment in the media playlist:\n%s", media)
	}
	segURL := ts.URL + "/hls/v1/" + string(seg)
	if code, _, b := get(t, segURL); code != 200 || !bytes.Contains(b[:16], []byte("moof")) {
		t.Fatalf("segment: %d", code)
	}
	var dash struct{ DASHStreamingSessionURL string }
	if code, _ := ts.call(t, "/getDASHStreamingSessionURL", map[string]any{"StreamName": "porch", "PlaybackMode": "ON_DEMAND",
		"DASHFragmentSelector": onDemand("porch")["HLSFragmentSelector"]}, &dash); code != 200 {
		t.Fatalf("GetDASHStreamingSessionURL: %d", code)
	}
	dashToken := dash.DASHStreamingSessionURL[strings.Index(dash.DASHStreamingSessionURL, "SessionToken="):]
	for _, c := range []struct {
		name, url string
		code      int
		typ       string
	}{
		{"track 3", strings.Replace(segURL, "TrackNumber=1", "TrackNumber=3", 1), 400, "InvalidArgumentException"},
		{"no track", strings.Replace(segURL, "&TrackNumber=1", "", 1), 400, "InvalidArgumentException"},
		{"not a fragment number", regexp.MustCompile(`FragmentNumber=\d+`).ReplaceAllString(segURL, "FragmentNumber=12"), 404, "ResourceNotFoundException"},
		{"a DASH token on HLS", regexp.MustCompile(`SessionToken=[^&]+`).ReplaceAllString(u, dashToken), 403, "NotAuthorizedException"},
		{"no token", ts.URL + "/hls/v1/getHLSMasterPlaylist.m3u8", 403, "NotAuthorizedException"},
		{"a TS fragment of an fMP4 session", strings.Replace(segURL, "getMP4MediaFragment.mp4", "getTSFragment.ts", 1), 400, "InvalidArgumentException"},
		{"unknown resource", strings.Replace(u, "getHLSMasterPlaylist.m3u8", "getHLSEverything.m3u8", 1), 404, "UnknownOperationException"},
	} {
		if code, typ, _ := get(t, c.url); code != c.code || typ != c.typ {
			t.Errorf("%s: %d %s, want %d %s", c.name, code, typ, c.code, c.typ)
		}
	}

	// Expiry: 300 s by default.
	clock.advance(299 * time.Second)
	if code, _, _ := get(t, segURL); code != 200 {
		t.Fatalf("a segment before expiry: %d", code)
	}
	clock.advance(2 * time.Second)
	for _, url := range []string{u, segURL} {
		if code, typ, b := get(t, url); code != 403 || typ != "NotAuthorizedException" || !strings.Contains(string(b), "expired") {
			t.Fatalf("after expiry: %d %s %s", code, typ, b)
		}
	}
	clock.advance(-301 * time.Second)

	// The stream deleted, then created again under its name: the session's
	// stream is gone.
	var desc struct{ StreamInfo struct{ StreamARN string } }
	ts.call(t, "/describeStream", map[string]any{"StreamName": "porch"}, &desc)
	if code, h := ts.call(t, "/deleteStream", map[string]any{"StreamARN": desc.StreamInfo.StreamARN}, nil); code != 200 {
		t.Fatalf("deleteStream: %d %s", code, h.Get("X-Amzn-ErrorType"))
	}
	ts.createStream(t, "porch", 24)
	if code, typ, _ := get(t, u); code != 404 || typ != "ResourceNotFoundException" {
		t.Fatalf("a session of a deleted stream: %d %s", code, typ)
	}
}

// TestNewSessionForThePage: the page's way in gives a root-relative URL
// that plays, and the service's error when there is nothing to play.
func TestNewSessionForThePage(t *testing.T) {
	ts, _ := playbackServer(t)
	u, err := ts.srv.NewSession(context.Background(), "porch", "ON_DEMAND", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || !strings.HasPrefix(u, "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
		t.Fatalf("NewSession: %q %v", u, err)
	}
	if code, _, b := get(t, ts.URL+u); code != 200 || !bytes.Contains(b, []byte("#EXT-X-STREAM-INF")) {
		t.Fatalf("the page's session: %d %s", code, b)
	}
	if _, err := ts.srv.NewSession(context.Background(), "porch", "ON_DEMAND", time.Unix(1e9, 0), time.Unix(1e9+60, 0)); err == nil ||
		!strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("NewSession for a range without fragments: %v", err)
	}
}
