package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/mkv"
)

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so that a test sees each one.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func getPage(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func login(t *testing.T, c *http.Client, base, key, secret string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/ui/login", strings.NewReader(url.Values{"access_key": {key}, "secret_key": {secret}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestPageNeedsLoginWithCredentials: with credentials configured, neither
// the page nor its API answers without a login; a login with the server's
// key and secret opens both; forged, expired and cross-site requests are
// refused.
func TestPageNeedsLoginWithCredentials(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	ts := startServer(t, func(c *server.Config) { c.Now = clock })
	ts.createStream(t, "cam", 1)
	c := browser(t)

	if code, _, h := getPage(t, c, ts.URL+"/"); code != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("GET / without login: %d to %q, want a redirect to the login", code, h.Get("Location"))
	}
	for _, p := range []string{"/ui/api/streams", "/ui/api/streams/cam/timeline", "/ui/api/streams/cam/clip?start=1&end=2"} {
		if code, body, _ := getPage(t, c, ts.URL+p); code != http.StatusUnauthorized || strings.Contains(body, "cam\"") {
			t.Fatalf("GET %s without login: %d %q", p, code, body)
		}
	}
	if code, body, _ := getPage(t, c, ts.URL+"/ui/login"); code != 200 || !strings.Contains(body, `name="secret_key"`) {
		t.Fatalf("login page: %d", code)
	}
	if code, loc := login(t, c, ts.URL, testKey, "wrong"); code != http.StatusSeeOther || loc != "/ui/login?failed=1" {
		t.Fatalf("wrong secret: %d to %q", code, loc)
	}
	if code, loc := login(t, c, ts.URL, "AKIDOTHER", testSecret); code != http.StatusSeeOther || loc != "/ui/login?failed=1" {
		t.Fatalf("unknown key: %d to %q", code, loc)
	}
	if code, _, _ := getPage(t, c, ts.URL+"/ui/api/streams"); code != http.StatusUnauthorized {
		t.Fatalf("after failed logins: %d", code)
	}
	// A login form posted from another site is refused.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/ui/login", strings.NewReader("access_key="+testKey+"&secret_key="+testSecret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %v %v", resp.StatusCode, err)
	}

	if code, loc := login(t, c, ts.URL, testKey, testSecret); code != http.StatusSeeOther || loc != "/" {
		t.Fatalf("login: %d to %q", code, loc)
	}
	u, _ := url.Parse(ts.URL)
	cookies := c.Jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != "kvsgo_session" || strings.Contains(cookies[0].Value, testSecret) {
		t.Fatalf("session cookie %v", cookies)
	}
	if code, body, _ := getPage(t, c, ts.URL+"/"); code != 200 || !strings.Contains(body, "hls.min.js") {
		t.Fatalf("GET / after login: %d", code)
	}
	code, body, _ := getPage(t, c, ts.URL+"/ui/api/streams")
	var list struct {
		Auth    bool
		Streams []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || !list.Auth || len(list.Streams) != 1 || list.Streams[0].Name != "cam" {
		t.Fatalf("streams after login: %d %s", code, body)
	}

	// A tampered cookie (another key ID, same signature) is refused.
	forged := browser(t)
	v := cookies[0].Value
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "kvsgo_session", Value: "QUtJRE9USEVS" + v[strings.Index(v, "."):]}})
	if code, _, _ := getPage(t, forged, ts.URL+"/ui/api/streams"); code != http.StatusUnauthorized {
		t.Fatalf("forged cookie: %d", code)
	}
	// Past its lifetime the session ends.
	now = now.Add(13 * time.Hour)
	if code, _, _ := getPage(t, c, ts.URL+"/ui/api/streams"); code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", code)
	}
}

// TestPageOpenWithoutCredentials: a server that takes any signature shows
// its page to anyone (it is on loopback unless --insecure), with the
// vendored hls.js.
func TestPageOpenWithoutCredentials(t *testing.T) {
	ts := startServer(t, func(c *server.Config) { c.Credentials = nil })
	c := browser(t)
	if code, body, _ := getPage(t, c, ts.URL+"/"); code != 200 || !strings.Contains(body, "<template id=\"card\">") {
		t.Fatalf("GET /: %d", code)
	}
	if code, _, h := getPage(t, c, ts.URL+"/ui/login"); code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("login page without credentials: %d", code)
	}
	code, js, _ := getPage(t, c, ts.URL+"/ui/static/vendor/hls.js/hls.min.js")
	if code != 200 || len(js) < 100000 || !strings.Contains(js, "1.7.4") {
		t.Fatalf("hls.js: %d, %d bytes", code, len(js))
	}
	if code, _, _ := getPage(t, c, ts.URL+"/ui/static/app.js"); code != 200 {
		t.Fatalf("app.js: %d", code)
	}
	if code, _, _ := getPage(t, c, ts.URL+"/nothing-here"); code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", code)
	}
}

type fakeHLS struct {
	mode       string
	start, end time.Time
}

func (f *fakeHLS) NewSession(_ context.Context, stream, mode string, start, end time.Time) (string, error) {
	if stream != "cam" {
		return "", errors.New("unexpected stream " + stream)
	}
	f.mode, f.start, f.end = mode, start, end
	return "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=t", nil
}

type fakeClips struct{}

func (fakeClips) WriteClip(_ context.Context, w io.Writer, stream string, start, end time.Time) error {
	if end.Sub(start) > time.Hour {
		return errors.New("too long")
	}
	_, err := io.WriteString(w, "mp4:"+stream)
	return err
}

// TestPageAPI: the stream list shows state, bitrate and video from what
// is stored; the timeline lists stored spans; playback and clips go to the
// HLS and GetClip implementations the server is given.
func TestPageAPI(t *testing.T) {
	ts := startServer(t, func(c *server.Config) { c.Credentials = nil })
	ts.createStream(t, "cam", 1)
	ts.createStream(t, "empty", 1)
	// Two runs of two fragments, 10 s apart, 30 frames of 6 bytes each.
	var times []int64
	keys := map[int64]bool{}
	base := time.Now().Add(-time.Minute).UnixMilli()
	for _, start := range []int64{0, 1000, 12000, 13000} {
		keys[base+start] = true
		for i := range int64(30) {
			times = append(times, base+start+i*33)
		}
	}
	if acks, code := putMedia(t, ts.URL, "cam", bytes.NewReader(body(t, []mkv.Track{videoTrack(1)}, times, keys)), "ABSOLUTE"); code != 200 || countAcks(acks)["PERSISTED"] != 4 {
		t.Fatalf("putMedia: %d %v", code, countAcks(acks))
	}
	c := browser(t)
	_, body, _ := getPage(t, c, ts.URL+"/ui/api/streams")
	var list struct {
		Streams []struct {
			Name              string
			Live              bool
			Bitrate           int64
			Video             string
			LastFragmentAgeMs *int64
			FirstMs, LastMs   int64
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Streams) != 2 {
		t.Fatalf("streams: %v %s", err, body)
	}
	cam, empty := list.Streams[0], list.Streams[1]
	if cam.Name != "cam" || cam.Live || cam.Bitrate <= 0 || cam.Video != "H.264 64×64" || cam.LastFragmentAgeMs == nil || cam.FirstMs != base {
		t.Fatalf("cam: %+v", cam)
	}
	if empty.Name != "empty" || empty.LastFragmentAgeMs != nil || empty.Bitrate != 0 {
		t.Fatalf("empty: %+v", empty)
	}
	_, body, _ = getPage(t, c, ts.URL+"/ui/api/streams/cam/timeline")
	var tl struct {
		First, Last int64
		Spans       [][2]int64
	}
	if err := json.Unmarshal([]byte(body), &tl); err != nil || len(tl.Spans) != 2 || tl.First != base || tl.Spans[1][0] != base+12000 {
		t.Fatalf("timeline: %v %s", err, body)
	}
	if code, _, _ := getPage(t, c, ts.URL+"/ui/api/streams/nope/timeline"); code != http.StatusNotFound {
		t.Fatalf("timeline of an unknown stream: %d", code)
	}

	post := func(base, path, body string) (int, string) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	hls := &fakeHLS{}
	wired := startServer(t, func(c *server.Config) {
		c.Credentials = nil
		c.UI = server.UIConfig{HLS: hls, Clips: fakeClips{}}
	})
	wired.createStream(t, "cam", 1)
	code, msg := post(wired.URL, "/ui/api/streams/cam/hls", `{"mode":"ON_DEMAND","start":1000,"end":5000}`)
	if code != 200 || !strings.Contains(msg, `"url":"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=t"`) ||
		hls.mode != "ON_DEMAND" || hls.start.UnixMilli() != 1000 || hls.end.UnixMilli() != 5000 {
		t.Fatalf("hls: %d %q %+v", code, msg, hls)
	}
	if code, msg := post(wired.URL, "/ui/api/streams/cam/hls", `{"mode":"SOMETIME"}`); code != http.StatusBadRequest || !strings.Contains(msg, "SOMETIME") {
		t.Fatalf("bad mode: %d %q", code, msg)
	}
	if code, msg := post(wired.URL, "/ui/api/streams/nope/hls", `{"mode":"LIVE"}`); code != http.StatusNotFound {
		t.Fatalf("unknown stream: %d %q", code, msg)
	}
	code, msg, h := getPage(t, c, wired.URL+"/ui/api/streams/cam/clip?start=1000&end=5000")
	if code != 200 || msg != "mp4:cam" || h.Get("Content-Type") != "video/mp4" || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Fatalf("clip: %d %q %v", code, msg, h)
	}
	if code, msg, _ := getPage(t, c, wired.URL+"/ui/api/streams/cam/clip?start=0&end=7200000"); code != http.StatusInternalServerError || !strings.Contains(msg, "too long") {
		t.Fatalf("failing clip: %d %q", code, msg)
	}
	if code, _, _ := getPage(t, c, wired.URL+"/ui/api/streams/cam/clip?start=5&end=1"); code != http.StatusBadRequest {
		t.Fatalf("backwards range: %d", code)
	}
}

// TestPagePlaysThroughTheServer: by default the page's routes are the
// server's own HLS sessions and GetClip. After a login, the page's live
// and replay sessions play (master and media playlists with
// PROGRAM-DATE-TIME, a media segment), its clip is GetClip's file byte for
// byte, and a range with nothing in it is the service's error, not a file.
func TestPagePlaysThroughTheServer(t *testing.T) {
	ts, _ := playbackServer(t)
	c := browser(t)
	post := func(path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := post("/ui/api/streams/porch/hls", `{"mode":"LIVE"}`); code != http.StatusUnauthorized {
		t.Fatalf("a session without a login: %d", code)
	}
	if code, loc := login(t, c, ts.URL, testKey, testSecret); code != http.StatusSeeOther || loc != "/" {
		t.Fatalf("login: %d to %q", code, loc)
	}
	_, body, _ := getPage(t, c, ts.URL+"/ui/api/streams/porch/timeline")
	var tl struct{ First, Last int64 }
	if err := json.Unmarshal([]byte(body), &tl); err != nil || tl.First == 0 || tl.Last <= tl.First {
		t.Fatalf("timeline: %v %s", err, body)
	}
	// Whole seconds around what is stored, so GetClip's range is the same.
	start, end := tl.First/1000*1000-1000, (tl.Last/1000+2)*1000

	playable := func(mode, req string) {
		t.Helper()
		code, body := post("/ui/api/streams/porch/hls", req)
		var s struct{ URL string }
		if err := json.Unmarshal([]byte(body), &s); code != 200 || err != nil || !strings.HasPrefix(s.URL, "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
			t.Fatalf("%s session: %d %s", mode, code, body)
		}
		code, _, master := get(t, ts.URL+s.URL)
		if code != 200 || !bytes.Contains(master, []byte("#EXT-X-STREAM-INF")) {
			t.Fatalf("%s master playlist: %d %s", mode, code, master)
		}
		var media string
		for _, l := range strings.Split(string(master), "\n") {
			if strings.HasPrefix(l, "getHLSMediaPlaylist.m3u8") {
				media = l
				break
			}
		}
		code, _, pl := get(t, ts.URL+"/hls/v1/"+media)
		if code != 200 || !bytes.Contains(pl, []byte("#EXT-X-PROGRAM-DATE-TIME:")) {
			t.Fatalf("%s media playlist: %d %s", mode, code, pl)
		}
		var seg string
		for _, l := range strings.Split(string(pl), "\n") {
			if strings.HasPrefix(l, "getMP4MediaFragment.mp4") {
				seg = l
				break
			}
		}
		if code, _, b := get(t, ts.URL+"/hls/v1/"+seg); code != 200 || len(b) < 8 || string(b[4:8]) != "moof" {
			t.Fatalf("%s media segment %q: %d", mode, seg, code)
		}
	}
	playable("LIVE", `{"mode":"LIVE"}`)
	playable("ON_DEMAND", fmt.Sprintf(`{"mode":"ON_DEMAND","start":%d,"end":%d}`, start, end))
	playable("LIVE_REPLAY", fmt.Sprintf(`{"mode":"LIVE_REPLAY","start":%d}`, start))

	code, clip, h := getPage(t, c, ts.URL+fmt.Sprintf("/ui/api/streams/porch/clip?start=%d&end=%d", start, end))
	if code != 200 || h.Get("Content-Type") != "video/mp4" || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Fatalf("clip: %d %v", code, h)
	}
	sel := map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange": map[string]any{"StartTimestamp": start / 1000, "EndTimestamp": end / 1000}}
	resp := ts.post(t, "/getClip", mustJSON(t, map[string]any{"StreamName": "porch", "ClipFragmentSelector": sel}))
	apiClip, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(apiClip) < 1000 || clip != string(apiClip) {
		t.Fatalf("the page's clip (%d bytes) is not GetClip's (%d: %d bytes)", len(clip), resp.StatusCode, len(apiClip))
	}

	code, msg, h := getPage(t, c, ts.URL+fmt.Sprintf("/ui/api/streams/porch/clip?start=%d&end=%d", int64(1e12), int64(1e12)+60000))
	if code != http.StatusNotFound || !strings.Contains(msg, "ResourceNotFoundException") || h.Get("Content-Disposition") != "" {
		t.Fatalf("a clip of a range without fragments: %d %v %q", code, h, msg)
	}
	code, msg = post("/ui/api/streams/porch/hls", fmt.Sprintf(`{"mode":"ON_DEMAND","start":%d,"end":%d}`, int64(1e12), int64(1e12)+60000))
	if code != http.StatusNotFound || !strings.Contains(msg, "no fragments in the requested time range") {
		t.Fatalf("a replay of a range without fragments: %d %q", code, msg)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
