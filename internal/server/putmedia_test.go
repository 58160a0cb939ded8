package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// frames returns every block payload of a Matroska stream, and the AWS tags.
func frames(t *testing.T, data []byte) (out [][]byte, tags map[string][]string, streams int) {
	t.Helper()
	tags = map[string][]string{}
	d := mkv.NewDemuxer(bytes.NewReader(data))
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out, tags, streams
		}
		if err != nil {
			t.Fatalf("reading media: %v", err)
		}
		switch ev.Type {
		case mkv.EventEBML:
			streams++
		case mkv.EventBlock:
			for _, f := range ev.Block.Frames {
				out = append(out, append([]byte(nil), f...))
			}
		case mkv.EventTags:
			for _, tg := range ev.Tags {
				tags[tg.Name] = append(tags[tg.Name], tg.Value)
			}
		}
	}
}

// TestKVSSinkSession ingests the PutMedia body AWS's kvssink sent: 12
// fragments, the last one ended by its END_OF_FRAGMENT tag; all are
// acknowledged BUFFERING, RECEIVED and PERSISTED; GetMedia gives every frame
// back with the service's tags.
func TestKVSSinkSession(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "capture", 24)
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	acks, code := putMedia(t, ts.URL, "capture", bytes.NewReader(body), "ABSOLUTE")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	n := countAcks(acks)
	if n[kvs.AckBuffering] != 12 || n[kvs.AckReceived] != 12 || n[kvs.AckPersisted] != 12 || n[kvs.AckError] != 0 {
		t.Fatalf("acks %v", n)
	}
	// Each fragment's acks come in order and carry the cluster timecode.
	srcFrames, _, _ := frames(t, body)
	var clusterTCs []int64
	d := mkv.NewDemuxer(bytes.NewReader(body))
	for {
		ev, err := d.Next()
		if err != nil {
			break
		}
		if ev.Type == mkv.EventCluster {
			clusterTCs = append(clusterTCs, ev.Timecode)
		}
	}
	persisted := 0
	for _, a := range acks {
		if a.EventType == kvs.AckPersisted {
			if a.FragmentTimecode != clusterTCs[persisted] || !a.HasTimecode || a.FragmentNumber == "" {
				t.Fatalf("PERSISTED %d: %+v, cluster timecode %d", persisted, a, clusterTCs[persisted])
			}
			persisted++
		}
	}

	// The AWS CLI reads it back.
	outFile := t.TempDir() + "/out.mkv"
	out, code2, stderr := ts.aws(t, "kinesis-video-media", "get-media", "--stream-name", "capture",
		"--start-selector", "StartSelectorType=EARLIEST", outFile)
	if code2 != 0 || !strings.Contains(out, `"ContentType": "video/webm"`) {
		t.Fatalf("get-media: %s %s", out, stderr)
	}
	got, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	gotFrames, tags, streams := frames(t, got)
	if streams != 12 || len(gotFrames) != len(srcFrames) {
		t.Fatalf("GetMedia: %d chunks, %d frames; want 12 and %d", streams, len(gotFrames), len(srcFrames))
	}
	for i := range srcFrames {
		if !bytes.Equal(gotFrames[i], srcFrames[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	for _, name := range []string{mkv.TagFragmentNumber, mkv.TagServerTimestamp, mkv.TagProducerTS, mkv.TagMillisBehindNow, mkv.TagContinuation} {
		if len(tags[name]) != 12 {
			t.Errorf("tag %s seen %d times, want 12", name, len(tags[name]))
		}
	}
	// The producer timestamp is the absolute cluster timecode.
	if want := secondsOf(clusterTCs[0]); tags[mkv.TagProducerTS][0] != want {
		t.Errorf("first producer timestamp %s, want %s", tags[mkv.TagProducerTS][0], want)
	}
}

func secondsOf(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

// TestGetMediaClustersHaveKnownSizes: producers stream Clusters of unknown
// size (kvssink does), but GetMedia and GetMediaForFragmentList send each
// stored fragment's Cluster with its size, as the service's captures show;
// ffmpeg still reads every frame.
func TestGetMediaClustersHaveKnownSizes(t *testing.T) {
	ts := startServer(t)
	ts.createStream(t, "sizes", 24)
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	if acks, code := putMedia(t, ts.URL, "sizes", bytes.NewReader(body), "ABSOLUTE"); code != 200 || countAcks(acks)[kvs.AckPersisted] != 12 {
		t.Fatalf("status %d, acks %v", code, countAcks(acks))
	}
	// The capture's own Clusters are of unknown size: the test proves something.
	if info := string(mediatest.Run(t, nil, "mkvinfo", "-z", mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))); !strings.Contains(info, "Cluster size is unknown") {
		t.Fatalf("the capture has no unknown-size Cluster:\n%s", info)
	}
	dir := t.TempDir()
	got := filepath.Join(dir, "get.mkv")
	if out, code, stderr := ts.aws(t, "kinesis-video-media", "get-media", "--stream-name", "sizes",
		"--start-selector", "StartSelectorType=EARLIEST", got); code != 0 {
		t.Fatalf("get-media: %s %s", out, stderr)
	}
	var list struct {
		Fragments []struct{ FragmentNumber string }
	}
	if code, _ := ts.call(t, "/listFragments", map[string]any{"StreamName": "sizes"}, &list); code != 200 || len(list.Fragments) != 12 {
		t.Fatalf("listFragments: %d, %d fragments", code, len(list.Fragments))
	}
	var numbers []string
	for _, f := range list.Fragments {
		numbers = append(numbers, f.FragmentNumber)
	}
	listed := filepath.Join(dir, "list.mkv")
	// The outfile goes before --fragments, whose list would swallow it.
	args := append([]string{"kinesis-video-archived-media", "get-media-for-fragment-list", listed, "--stream-name", "sizes", "--fragments"}, numbers...)
	if out, code, stderr := ts.aws(t, args...); code != 0 {
		t.Fatalf("get-media-for-fragment-list: %s %s", out, stderr)
	}
	srcFrames, _, _ := frames(t, body)
	for _, path := range []string{got, listed} {
		// mkvinfo shows only the first chunk (the first EBML document).
		info := string(mediatest.Run(t, nil, "mkvinfo", "-z", path))
		if !strings.Contains(info, "+ Cluster size ") || strings.Contains(info, "Cluster size is unknown") {
			t.Fatalf("%s: the first Cluster's size is not known:\n%s", filepath.Base(path), info)
		}
		if known, unknown := clusterSizes(t, mustRead(t, path)); known != 12 || unknown != 0 {
			t.Fatalf("%s: %d Clusters of known size, %d of unknown size (want 12, 0)", filepath.Base(path), known, unknown)
		}
		// ffmpeg reads every fragment. It does name each chunk's Segment
		// "unknown-length element with ID 0x18538067", as it does for the
		// service's own output (the captures): the Segment's size stays
		// unknown there, and a known one would end ffmpeg's reading at the
		// first fragment. Any other unknown-length element is ours.
		stdout, code, stderr := mediatest.Exec(t, nil, "ffprobe", "-v", "warning", "-show_entries", "packet=pts", "-of", "csv", path)
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if code != 0 || line != "" && !strings.Contains(line, "unknown-length element with ID 0x18538067") {
				t.Fatalf("%s: ffprobe exit %d:\n%s", filepath.Base(path), code, stderr)
			}
		}
		if n := bytes.Count(stdout, []byte("packet,")); n != len(srcFrames) {
			t.Fatalf("%s: ffprobe read %d packets, %d were sent", filepath.Base(path), n, len(srcFrames))
		}
	}
	gotFrames, _, _ := frames(t, mustRead(t, got))
	if len(gotFrames) != len(srcFrames) {
		t.Fatalf("GetMedia gave %d frames, %d were sent", len(gotFrames), len(srcFrames))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clusterSizes counts the Clusters of known and of unknown size in every
// chunk of a GetMedia-shaped output.
func clusterSizes(t *testing.T, b []byte) (known, unknown int) {
	t.Helper()
	r := mkv.NewReader(bytes.NewReader(b))
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return known, unknown
		}
		if err != nil {
			t.Fatalf("reading the output: %v", err)
		}
		if e.ID != mkv.IDCluster {
			continue
		}
		if e.Size == mkv.UnknownSize {
			unknown++
			continue
		}
		known++
		if err := r.Skip(); err != nil {
			t.Fatalf("skipping a Cluster: %v", err)
		}
	}
}
