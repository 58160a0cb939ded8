package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

type listed struct {
	Fragments []struct {
		FragmentNumber               string
		FragmentSizeInBytes          int64
		ProducerTimestamp            float64
		ServerTimestamp              float64
		FragmentLengthInMilliseconds int64
	}
	NextToken string
}

// TestArchivedMediaWithAWSCLI: list-fragments with both selectors and
// paging, and get-media-for-fragment-list, through the real AWS CLI.
func TestArchivedMediaWithAWSCLI(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	ts.createStream(t, "capture", 24)
	data, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	putMedia(t, ts.URL, "capture", bytes.NewReader(data), "ABSOLUTE")
	after := time.Now().Add(time.Second)

	list := func(args ...string) listed {
		t.Helper()
		out, code, stderr := ts.aws(t, append([]string{"kinesis-video-archived-media", "list-fragments", "--stream-name", "capture"}, args...)...)
		if code != 0 {
			t.Fatalf("list-fragments %v: %s", args, stderr)
		}
		var l listed
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	all := list()
	if len(all.Fragments) != 12 {
		t.Fatalf("%d fragments", len(all.Fragments))
	}
	first := all.Fragments[0]
	if first.FragmentSizeInBytes == 0 || first.FragmentLengthInMilliseconds < 700 || first.FragmentLengthInMilliseconds > 900 {
		t.Fatalf("first fragment: %+v (25 frames at 30 fps is 833 ms)", first)
	}
	// The producer timestamps are kvssink's absolute cluster timecodes.
	p0 := first.ProducerTimestamp
	byProducer := list("--fragment-selector", fmt.Sprintf(
		"FragmentSelectorType=PRODUCER_TIMESTAMP,TimestampRange={StartTimestamp=%.3f,EndTimestamp=%.3f}", p0+0.5, p0+2.6))
	if len(byProducer.Fragments) != 3 {
		t.Fatalf("producer range: %d fragments, want 3", len(byProducer.Fragments))
	}
	byServer := list("--fragment-selector", fmt.Sprintf(
		"FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", before.Unix(), after.Unix()))
	if len(byServer.Fragments) != 12 {
		t.Fatalf("server range: %d fragments, want 12", len(byServer.Fragments))
	}
	if none := list("--fragment-selector", fmt.Sprintf("FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}",
		before.Add(-time.Hour).Unix(), before.Add(-time.Minute).Unix())); len(none.Fragments) != 0 {
		t.Fatalf("empty range: %d fragments", len(none.Fragments))
	}
	// A range older than the stream's retention is an error, as the service's.
	if _, code, stderr := ts.aws(t, "kinesis-video-archived-media", "list-fragments", "--stream-name", "capture", "--fragment-selector",
		"FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=1000,EndTimestamp=2000}"); code == 0 ||
		!strings.Contains(stderr, "(InvalidArgumentException)") || !strings.Contains(stderr, "outside of the stream retention period") {
		t.Fatalf("range older than retention: exit %d %s", code, stderr)
	}
	// Paging with NextToken gives the same fragments.
	var paged []string
	var page listed
	page = list("--max-results", "5")
	paged = append(paged, numbers(page)...)
	for page.NextToken != "" {
		page = list("--max-results", "5", "--next-token", page.NextToken)
		paged = append(paged, numbers(page)...)
	}
	if fmt.Sprint(paged) != fmt.Sprint(numbers(all)) {
		t.Fatalf("paged %v, all %v", paged, numbers(all))
	}

	// Two fragments, in the order asked.
	out := filepath.Join(t.TempDir(), "two.mkv")
	if o, code, stderr := ts.aws(t, "kinesis-video-archived-media", "get-media-for-fragment-list", out, "--stream-name", "capture",
		"--fragments", all.Fragments[3].FragmentNumber, all.Fragments[1].FragmentNumber); code != 0 {
		t.Fatalf("get-media-for-fragment-list: %s %s", o, stderr)
	}
	got, _ := os.ReadFile(out)
	gotFrames, tags, streams := frames(t, got)
	if streams != 2 || len(gotFrames) != 50 || tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"][0] != all.Fragments[3].FragmentNumber {
		t.Fatalf("%d chunks, %d frames, numbers %v", streams, len(gotFrames), tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"])
	}
	if _, code, stderr := ts.aws(t, "kinesis-video-archived-media", "get-media-for-fragment-list", out, "--stream-name", "capture",
		"--fragments", "91343852333000000000000000000000000000099999"); code == 0 || !bytes.Contains([]byte(stderr), []byte("(InvalidArgumentException)")) {
		t.Fatalf("unknown fragment: exit %d %s", code, stderr)
	}

	// GetMedia after a fragment number ("the chunk after a specific
	// fragment") and from a producer timestamp.
	fromFour := mustGetMedia(t, ts, "capture", `{"StartSelectorType":"FRAGMENT_NUMBER","AfterFragmentNumber":"`+all.Fragments[4].FragmentNumber+`"}`)
	if _, tags, n := frames(t, fromFour); n != 7 || tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"][0] != all.Fragments[5].FragmentNumber {
		t.Fatalf("GetMedia after fragment 4: %d fragments, want 7 from fragment 5", n)
	}
	fromTime := mustGetMedia(t, ts, "capture", fmt.Sprintf(`{"StartSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":%.3f}`, all.Fragments[10].ProducerTimestamp+0.1))
	if _, _, n := frames(t, fromTime); n != 2 {
		t.Fatalf("GetMedia from inside fragment 10: %d fragments, want 2", n)
	}
	cont := mustGetMedia(t, ts, "capture", `{"StartSelectorType":"CONTINUATION_TOKEN","ContinuationToken":"`+all.Fragments[10].FragmentNumber+`"}`)
	if _, _, n := frames(t, cont); n != 1 {
		t.Fatalf("GetMedia after a continuation token: %d fragments, want 1", n)
	}
}

func numbers(l listed) []string {
	var n []string
	for _, f := range l.Fragments {
		n = append(n, f.FragmentNumber)
	}
	return n
}

// TestFragmentLengthWithBFrames: a fragment lasts from its first picture
// to the end of its last, one frame interval after the latest presentation
// time, also when frames arrive in decoding order (B-frames: the second
// frame decoded is shown three frames later). Its length is what players
// are told a segment lasts; longer, and they leave gaps between segments.
func TestFragmentLengthWithBFrames(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	ts.createStream(t, "bframes", 24)
	// Two GOPs of 30 frames 33 ms apart, each I P B B P B B …, in decoding
	// order: presentation times 0, 3, 1, 2, 6, 4, 5, … frames.
	base := int64(1_800_000_000_000)
	var times []int64
	keys := map[int64]bool{}
	for g := range int64(3) {
		start := base + g*990
		keys[start] = true
		order := []int64{0}
		for p := int64(3); p < 30; p += 3 {
			order = append(order, p, p-2, p-1)
		}
		order = append(order, 28, 29)
		for _, k := range order {
			times = append(times, start+k*33)
		}
	}
	acks, code := putMedia(t, ts.URL, "bframes", bytes.NewReader(body(t, []mkv.Track{videoTrack(1)}, times, keys)), "ABSOLUTE")
	if code != 200 || countAcks(acks)[kvs.AckPersisted] != 3 {
		t.Fatalf("putMedia: %d %v", code, countAcks(acks))
	}
	var l listed
	if code, _ := ts.call(t, "/listFragments", map[string]any{"StreamName": "bframes"}, &l); code != 200 || len(l.Fragments) != 3 {
		t.Fatalf("listFragments: %d %+v", code, l)
	}
	for _, f := range l.Fragments {
		if f.FragmentLengthInMilliseconds != 990 {
			t.Fatalf("fragment %s lasts %d ms; 30 frames 33 ms apart last 990 ms", f.FragmentNumber, f.FragmentLengthInMilliseconds)
		}
	}
}
