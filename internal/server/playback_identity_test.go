package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/playback"
	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
)

// appendFragment stores one fixture cluster with the given timestamps (Unix
// ms), as ingest would.
func appendFragment(t *testing.T, st *store.Store, id store.StreamID, header, body []byte, producerMS, serverMS int64) store.Fragment {
	t.Helper()
	f, dup, err := st.AppendFragment(id, store.NewFragment{Header: header, Body: body,
		ProducerMS: producerMS, ServerMS: serverMS, DurationMS: 1000})
	if err != nil || dup {
		t.Fatalf("AppendFragment: %v (dup %v)", err, dup)
	}
	return f
}

var segmentRE = regexp.MustCompile(`(?m)^(getMP4MediaFragment\.mp4|getTSFragment\.ts)\?\S+$`)

// segments returns the fragment numbers a media playlist names, and the
// segment URLs.
func segments(t *testing.T, ts *testServer, master string) (numbers, urls []string) {
	t.Helper()
	code, typ, media := get(t, strings.Replace(master, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1)+"&TrackNumber=1")
	if code != 200 {
		t.Fatalf("media playlist: %d %s %s", code, typ, media)
	}
	for _, seg := range segmentRE.FindAll(media, -1) {
		m := regexp.MustCompile(`FragmentNumber=(\d+)`).FindSubmatch(seg)
		numbers = append(numbers, string(m[1]))
		urls = append(urls, ts.URL+"/hls/v1/"+string(seg))
	}
	return numbers, urls
}

func rangeSelector(typ string, start, end time.Time) map[string]any {
	return map[string]any{"FragmentSelectorType": typ, "TimestampRange": map[string]any{
		"StartTimestamp": float64(start.UnixMilli()) / 1000, "EndTimestamp": float64(end.UnixMilli()) / 1000}}
}

// TestPlaybackDuplicatesAndRetention, with the real store: two fragments
// with one producer timestamp and different bytes are both stored (and
// listed), and played once, the first ingested, whichever selector the
// session uses; a fragment older than the stream's retention is neither
// listed nor played nor served, though the sweep has not removed it.
func TestPlaybackDuplicatesAndRetention(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "dups", 1)
	rec, err := ts.store.Stream("dups")
	if err != nil {
		t.Fatal(err)
	}
	header, bodies := fixtureClusters(t)
	now := time.Now()
	base := now.Add(-10 * time.Minute).UnixMilli() // producer times
	expired := appendFragment(t, ts.store, rec.ID, header, bodies[0], base, now.Add(-2*time.Hour).UnixMilli())
	first := appendFragment(t, ts.store, rec.ID, header, bodies[1], base+2000, now.UnixMilli()-3000)
	again := appendFragment(t, ts.store, rec.ID, header, bodies[2], base+2000, now.UnixMilli()-2000)
	last := appendFragment(t, ts.store, rec.ID, header, bodies[3], base+4000, now.UnixMilli()-1000)

	var listed struct {
		Fragments []struct{ FragmentNumber string }
	}
	if code, h := ts.call(t, "/listFragments", map[string]any{"StreamName": "dups"}, &listed); code != 200 {
		t.Fatalf("ListFragments: %d %s", code, errorName(h))
	}
	var numbers []string
	for _, f := range listed.Fragments {
		numbers = append(numbers, f.FragmentNumber)
	}
	if want := []string{first.Number(), again.Number(), last.Number()}; !slices.Equal(numbers, want) {
		t.Fatalf("ListFragments lists %v, want %v (both fragments of the timestamp, not the expired one)", numbers, want)
	}

	want := []string{first.Number(), last.Number()}
	for _, sel := range []map[string]any{
		rangeSelector("PRODUCER_TIMESTAMP", time.UnixMilli(base).Add(-time.Minute), time.UnixMilli(base).Add(time.Minute)),
		rangeSelector("SERVER_TIMESTAMP", now.Add(-3*time.Hour), time.Now()),
	} {
		for _, container := range []string{"FRAGMENTED_MP4", "MPEG_TS"} {
			u := hlsURL(t, ts, map[string]any{"StreamName": "dups", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": sel, "ContainerFormat": container})
			got, urls := segments(t, ts, u)
			if !slices.Equal(got, want) {
				t.Fatalf("%s %s playlist names %v, want %v", sel["FragmentSelectorType"], container, got, want)
			}
			expiredURL := strings.Replace(urls[0], first.Number(), expired.Number(), 1)
			if code, typ, b := get(t, expiredURL); code != 404 || typ != "ResourceNotFoundException" || !strings.Contains(string(b), "retention") {
				t.Fatalf("the expired fragment's segment: %d %s %s", code, typ, b)
			}
		}
	}

	// GetClip: the frames of the first and last fragments.
	body, _ := json.Marshal(map[string]any{"StreamName": "dups", "ClipFragmentSelector": rangeSelector("PRODUCER_TIMESTAMP",
		time.UnixMilli(base).Add(-time.Minute), time.UnixMilli(base).Add(time.Minute))})
	resp := ts.post(t, "/getClip", body)
	clip, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GetClip: %d %s", resp.StatusCode, clip)
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, clip, 0o644); err != nil {
		t.Fatal(err)
	}
	frames := 0
	for _, b := range [][]byte{bodies[1], bodies[3]} {
		f, err := playback.ParseFragment(header, b)
		if err != nil {
			t.Fatal(err)
		}
		frames += len(f.Track(1).Frames)
	}
	if got := len(mediatest.PacketMD5(t, path, nil, "", "v:0")); got != frames {
		t.Fatalf("the clip has %d video frames, the first and last fragments %d", got, frames)
	}
}

// TestPlaybackSessionOfRecreatedStream: sessions of a stream that is
// deleted and created again under its name answer 404 for every resource
// (a LIVE reload blocked at the live edge included) and never name or
// serve the new stream's fragments, which new sessions play.
func TestPlaybackSessionOfRecreatedStream(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "cam", 1)
	header, bodies := fixtureClusters(t)
	put := func(bs ...[]byte) []string {
		rec, err := ts.store.Stream("cam")
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UnixMilli()
		var nums []string
		for i, b := range bs {
			f := appendFragment(t, ts.store, rec.ID, header, b, now-int64(len(bs)-i)*1000, now)
			nums = append(nums, f.Number())
		}
		return nums
	}
	oldNums := put(bodies[0], bodies[1])
	rel, err := ts.srv.NewSession(context.Background(), "cam", "LIVE", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	live := ts.URL + rel
	onDemand := hlsURL(t, ts, map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
		"HLSFragmentSelector": rangeSelector("PRODUCER_TIMESTAMP", time.Now().Add(-time.Minute), time.Now().Add(time.Minute))})
	var oldURLs []string
	for _, u := range []string{live, onDemand} {
		nums, urls := segments(t, ts, u)
		if !slices.Equal(nums, oldNums) {
			t.Fatalf("the session names %v, want %v", nums, oldNums)
		}
		init := strings.Replace(urls[0], "getMP4MediaFragment", "getMP4InitFragment", 1)
		oldURLs = append(oldURLs, u, strings.Replace(u, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1)+"&TrackNumber=1", init, urls[0], urls[1])
	}

	// A LIVE player waiting for the next fragment when the stream goes.
	blocked := make(chan int, 1)
	go func() {
		resp, err := http.Get(strings.Replace(live, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1) + "&TrackNumber=1&_HLS_msn=2")
		if err != nil {
			blocked <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		blocked <- resp.StatusCode
	}()
	rec, err := ts.store.Stream("cam")
	if err != nil {
		t.Fatal(err)
	}
	if code, h := ts.call(t, "/deleteStream", map[string]any{"StreamARN": rec.ARN}, nil); code != 200 {
		t.Fatalf("DeleteStream: %d %s", code, errorName(h))
	}
	if code := <-blocked; code != 404 {
		t.Fatalf("a LIVE reload blocked when the stream was deleted answered %d, want 404", code)
	}
	ts.createStream(t, "cam", 1)
	newNums := put(bodies[2], bodies[3])
	for _, u := range oldURLs {
		code, typ, b := get(t, u)
		if code != 404 || typ != "ResourceNotFoundException" || !strings.Contains(string(b), "deleted") {
			t.Fatalf("an old session's %s: %d %s %s", u[strings.Index(u, "/hls/"):strings.Index(u, "?")], code, typ, b)
		}
		for _, n := range newNums {
			if strings.Contains(string(b), n) {
				t.Fatalf("an old session's answer names the new stream's fragment %s", n)
			}
		}
	}
	fresh := hlsURL(t, ts, map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
		"HLSFragmentSelector": rangeSelector("PRODUCER_TIMESTAMP", time.Now().Add(-time.Minute), time.Now().Add(time.Minute))})
	if nums, _ := segments(t, ts, fresh); !slices.Equal(nums, newNums) {
		t.Fatalf("a new session names %v, want the new stream's %v", nums, newNums)
	}
}

// TestPlaybackOfStreamNotActive: a stream still being created has no
// sessions or clips yet, as the service answers for any data-plane call.
func TestPlaybackOfStreamNotActive(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), TransitionDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := server.New(server.Config{Store: st})
	defer srv.Shutdown(context.Background())
	ts := &testServer{Server: httptest.NewServer(srv.Handler()), store: st, srv: srv}
	defer ts.Close()
	if _, err := st.CreateStream(store.NewStream{Name: "new", RetentionHours: 1}); err != nil {
		t.Fatal(err)
	}
	sel := rangeSelector("PRODUCER_TIMESTAMP", time.Now().Add(-time.Minute), time.Now())
	for path, in := range map[string]map[string]any{
		"/getHLSStreamingSessionURL":  {"StreamName": "new"},
		"/getDASHStreamingSessionURL": {"StreamName": "new", "PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": sel},
		"/getClip":                    {"StreamName": "new", "ClipFragmentSelector": sel},
	} {
		code, h := ts.call(t, path, in, nil)
		if code != 404 || errorName(h) != "ResourceNotFoundException" {
			t.Errorf("%s of a CREATING stream: %d %s", path, code, errorName(h))
		}
	}
	if _, err := srv.NewSession(context.Background(), "new", "LIVE", time.Time{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Errorf("NewSession of a CREATING stream: %v", err)
	}
}

// TestPlaybackInitAfterItsFragmentExpired: a playlist's EXT-X-MAP names
// the fragment that first had the codec configuration; once that fragment
// expires, the initialization segment is still served (from a fragment of
// the playlist with the same configuration) while the rest play on.
func TestPlaybackInitAfterItsFragmentExpired(t *testing.T) {
	c := &testClock{}
	st, err := store.Open(store.Options{Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := server.New(server.Config{Store: st, Now: c.now})
	defer srv.Shutdown(context.Background())
	ts := &testServer{Server: httptest.NewServer(srv.Handler()), store: st, srv: srv}
	defer ts.Close()
	rec, err := st.CreateStream(store.NewStream{Name: "cam", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	header, bodies := fixtureClusters(t)
	now := c.now()
	oldest := appendFragment(t, st, rec.ID, header, bodies[0], now.Add(-3*time.Second).UnixMilli(), now.Add(-time.Hour+time.Minute).UnixMilli())
	appendFragment(t, st, rec.ID, header, bodies[1], now.Add(-2*time.Second).UnixMilli(), now.UnixMilli())
	appendFragment(t, st, rec.ID, header, bodies[2], now.Add(-time.Second).UnixMilli(), now.UnixMilli())
	u := hlsURL(t, ts, map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
		"HLSFragmentSelector": rangeSelector("PRODUCER_TIMESTAMP", now.Add(-time.Minute), now.Add(time.Minute))})
	mapRE := regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)
	media := strings.Replace(u, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1) + "&TrackNumber=1"
	_, _, b := get(t, media)
	m := mapRE.FindSubmatch(b)
	if m == nil || !strings.Contains(string(m[1]), oldest.Number()) {
		t.Fatalf("the playlist's map does not name the first fragment:\n%s", b)
	}
	c.advance(2 * time.Minute) // the first fragment expires
	nums, _ := segments(t, ts, u)
	if len(nums) != 2 || slices.Contains(nums, oldest.Number()) {
		t.Fatalf("after expiry the playlist names %v", nums)
	}
	_, _, b = get(t, media)
	if m = mapRE.FindSubmatch(b); m == nil {
		t.Fatalf("no map:\n%s", b)
	}
	code, typ, init := get(t, ts.URL+"/hls/v1/"+strings.ReplaceAll(string(m[1]), "&amp;", "&"))
	if code != 200 || !strings.Contains(string(init[:min(len(init), 64)]), "ftyp") {
		t.Fatalf("the initialization segment after its fragment expired: %d %s %s", code, typ, init)
	}
}
