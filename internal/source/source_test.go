package source

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

type collect struct {
	tracks []media.Track
	frames []media.Frame
	starts int
	drops  map[uint8]int // frames reported lost, by track
	why    map[Loss]int  // and by reason
}

// The sources find DropSink by a type assertion: a Drop that does not
// match it would go unnoticed.
var _ DropSink = (*collect)(nil)

func (c *collect) Start(t []media.Track) error { c.tracks = t; c.starts++; return nil }

func (c *collect) Drop(track uint8, n int, why Loss) {
	if c.drops == nil {
		c.drops, c.why = map[uint8]int{}, map[Loss]int{}
	}
	c.drops[track] += n
	c.why[why] += n
}
func (c *collect) Frame(f media.Frame) error {
	f.Data = append([]byte(nil), f.Data...)
	c.frames = append(c.frames, f)
	return nil
}

func (c *collect) count(track uint8) int {
	n := 0
	for _, f := range c.frames {
		if f.Track == track {
			n++
		}
	}
	return n
}

func TestEveryFixture(t *testing.T) {
	cases := []struct {
		fixture, kind, codec string
		audio                bool
	}{
		{"h264-baseline.h264", "*source.AnnexB", media.CodecH264, false},
		{"h264-high-bframes.h264", "*source.AnnexB", media.CodecH264, false},
		{"h265.h265", "*source.AnnexB", media.CodecH265, false},
		{"h264-aac.mkv", "*source.Matroska", media.CodecH264, true},
		{"h264-aac.ts", "*source.MPEGTS", media.CodecH264, true},
		{"h264-aac.mp4", "*source.MP4", media.CodecH264, true},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			src, closer, err := Open(mediatest.Fixture(t, c.fixture), Options{Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			if kind := fmt.Sprintf("%T", src); kind != c.kind {
				t.Fatalf("recognised as %s, want %s", kind, c.kind)
			}
			var got collect
			if err := src.Run(context.Background(), &got); err != nil {
				t.Fatal(err)
			}
			v := got.tracks[0]
			if v.Kind != media.KindVideo || v.CodecID != c.codec || v.Width != 640 || v.Height != 480 || len(v.CodecPrivate) == 0 {
				t.Fatalf("video track %+v", v)
			}
			if n := got.count(1); n != 90 {
				t.Fatalf("%d video frames, want 90", n)
			}
			if !got.frames[0].Key {
				t.Fatal("the first frame is not a key frame")
			}
			if c.audio {
				if len(got.tracks) != 2 || got.tracks[1].CodecID != media.CodecAAC || got.tracks[1].SampleRate != 48000 || got.count(2) < 140 {
					t.Fatalf("audio: %+v, %d frames", got.tracks, got.count(2))
				}
			}
			// Decoding times of the video never go backwards.
			var last time.Duration = -1
			for _, f := range got.frames {
				if f.Track == 1 {
					if f.DTS < last {
						t.Fatalf("DTS %v after %v", f.DTS, last)
					}
					last = f.DTS
				}
			}
		})
	}
}

func TestTestSourceLoopsWithContinuousTimestamps(t *testing.T) {
	var got collect
	if err := (&TestSource{Loops: 3, Fast: true}).Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.frames) != 180 || got.tracks[0].Width != 320 {
		t.Fatalf("%d frames, track %+v", len(got.frames), got.tracks[0])
	}
	for i, f := range got.frames {
		if want := time.Duration(math.Round(float64(i) * 1e9 / 30)); f.PTS != want || f.DTS != want {
			t.Fatalf("frame %d at %v/%v, want %v", i, f.PTS, f.DTS, want)
		}
		if f.Key != (i%30 == 0) {
			t.Fatalf("frame %d key=%v", i, f.Key)
		}
	}
}

func TestStdinAndErrors(t *testing.T) {
	src, _, err := Open("-", Options{Stdin: bytes.NewReader(mediatest.ReadFixture(t, "h265.h265"))})
	if err != nil {
		t.Fatal(err)
	}
	inner, release, err := src.(*stdin).sniff(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	if a, ok := inner.(*AnnexB); !ok || a.Pace {
		t.Fatalf("stdin: %T (paced: a pipe sets its own pace)", inner)
	}
	// kvsgo put --source - < file: a file, sent in real time.
	f, err := os.Open(mediatest.Fixture(t, "h265.h265"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, _, _ = Open("-", Options{Stdin: f})
	if inner, release, err = src.(*stdin).sniff(context.Background()); err != nil {
		t.Fatal(err)
	}
	release()
	if a, ok := inner.(*AnnexB); !ok || !a.Pace {
		t.Fatalf("stdin from a file: %T (not paced)", inner)
	}
	if _, _, err := Open(filepath.Join(t.TempDir(), "missing.h264"), Options{}); err == nil {
		t.Fatal("a missing file opened")
	}
	junk := filepath.Join(t.TempDir(), "junk.bin")
	os.WriteFile(junk, bytes.Repeat([]byte("not video "), 100), 0o644)
	if _, _, err := Open(junk, Options{}); err == nil {
		t.Fatal("junk recognised as video")
	}
	// Annex-B without parameter sets says so.
	noSPS := &AnnexB{R: bytes.NewReader([]byte{0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x41, 0x9a}), Codec: 1}
	if err := noSPS.Run(context.Background(), &collect{}); err == nil {
		t.Fatal("a stream without SPS/PPS produced no error")
	}
}

// FuzzSources: whatever bytes arrive on stdin, the source recognising
// them ends with frames or an error, never a panic or a hang.
func FuzzSources(f *testing.F) {
	for _, name := range []string{"h264-baseline.h264", "h265.h265", "h264-aac.mkv", "h264-aac.ts", "h264-aac.mp4"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 2500)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := Sniff(bytes.NewReader(data), false, Options{})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = src.Run(ctx, &collect{})
	})
}

func TestLabel(t *testing.T) {
	for spec, want := range map[string]string{
		"rtsp://admin:hunter2@10.0.0.5/stream1": "rtsp://admin:xxxxx@10.0.0.5/stream1",
		"gst:videotestsrc ! x264enc":            "gst",
		"exec:ffmpeg -i x -f h264 -":            "exec",
		"camera.h264":                           "camera.h264",
		"-":                                     "-",
	} {
		if got := Label(spec); got != want {
			t.Errorf("Label(%q) = %q, want %q", spec, got, want)
		}
	}
}
