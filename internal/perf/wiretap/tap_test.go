package wiretap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsgo/kvsgo/internal/perf/perftest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// clipFrames reads the video of a test clip.
func clipFrames(t *testing.T, path string) (media.Track, []media.Frame) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := mkv.NewDemuxer(bytes.NewReader(b))
	var track media.Track
	var frames []media.Frame
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Type == mkv.EventHeader:
			v := ev.Header.Tracks[0]
			track = media.Track{Number: 1, Kind: media.KindVideo, CodecID: v.CodecID, CodecPrivate: append([]byte(nil), v.CodecPrivate...),
				Width: int(v.Width), Height: int(v.Height)}
		case ev.Type == mkv.EventBlock && ev.Block.Track == 1:
			ts := time.Duration(ev.Timecode) * time.Millisecond
			frames = append(frames, media.Frame{Track: 1, PTS: ts, DTS: ts, Key: ev.Key, Data: append([]byte(nil), ev.Block.Frames[0]...)})
		}
	}
	return track, frames
}

// TestTapBetweenProducerAndServer puts kvsgo's producer and server on
// either side of the tap and checks that it sees every request, frame,
// fragment and acknowledgement, in order, and that it changes nothing
// (the server stores and acknowledges every fragment).
func TestTapBetweenProducerAndServer(t *testing.T) {
	srvURL := perftest.StartServer(t)
	u, _ := url.Parse(srvURL)
	tap, err := Listen("127.0.0.1:0", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()

	track, frames := clipFrames(t, "../../../testdata/h264-aac.mkv")
	keys := 0
	for _, f := range frames {
		if f.Key {
			keys++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}
	p, err := kvs.NewProducer(ctx, kvs.ProducerConfig{
		Stream:       kvs.StreamSetup{Name: "tapped", Create: true, RetentionHours: 1},
		ControlPlane: kvs.NewSDKControlPlane(awsCfg, tap.URL(), nil), // so the data endpoint is the tap, too
		Credentials:  awsCfg.Credentials, Region: awsCfg.Region,
	}, []media.Track{track})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := p.Put(f); err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Persisted != int64(keys) {
		t.Fatalf("the server persisted %d of %d fragments through the tap", st.Persisted, keys)
	}

	paths := map[string]bool{}
	for _, r := range tap.Requests() {
		paths[r.Path] = true
	}
	for _, want := range []string{"/describeStream", "/createStream", "/getDataEndpoint", "/putMedia"} {
		if !paths[want] {
			t.Errorf("the tap did not see %s (saw %v)", want, paths)
		}
	}
	sessions := tap.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d PutMedia sessions, want 1", len(sessions))
	}
	s := sessions[0]
	if s.ScanErr != "" || s.Stream != "tapped" {
		t.Fatalf("session of %q, scan error %q", s.Stream, s.ScanErr)
	}
	if len(s.Frames) != len(frames) {
		t.Fatalf("the tap saw %d frames, %d were put", len(s.Frames), len(frames))
	}
	first := s.Frames[0].Timecode
	for i, f := range s.Frames {
		want := frames[i]
		if f.Key != want.Key || f.Size != len(want.Data) || time.Duration(f.Timecode-first)*time.Millisecond != want.PTS-frames[0].PTS {
			t.Fatalf("frame %d: key %v, %d bytes at +%d ms; put: key %v, %d bytes at +%v", i, f.Key, f.Size, f.Timecode-first, want.Key, len(want.Data), want.PTS-frames[0].PTS)
		}
		if f.At.Before(s.FirstBody) {
			t.Fatalf("frame %d crossed before the body began", i)
		}
	}
	if len(s.Fragments) != keys {
		t.Fatalf("%d fragments, %d key frames", len(s.Fragments), keys)
	}
	for i, f := range s.Fragments {
		if f.Buffering.IsZero() || f.Persisted.IsZero() || f.Completed.IsZero() {
			t.Fatalf("fragment %d: %+v", i, f)
		}
		// The server cannot persist what it has not seen end.
		if f.Persisted.Before(f.Completed) || f.Completed.Before(f.Started) {
			t.Fatalf("fragment %d started %v, completed %v, persisted %v", i, f.Started, f.Completed, f.Persisted)
		}
		if f.LastTimecode < f.Timecode || f.Frames == 0 {
			t.Fatalf("fragment %d: %d frames, last at %d, starts at %d", i, f.Frames, f.LastTimecode, f.Timecode)
		}
	}
	if s.BodyEnded.IsZero() {
		t.Fatal("the tap did not see the body end")
	}
	if s.FirstBody.Before(s.Opened) {
		t.Fatalf("opened %v, body %v", s.Opened, s.FirstBody)
	}
}
