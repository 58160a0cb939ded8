package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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
