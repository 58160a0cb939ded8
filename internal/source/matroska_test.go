package source

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// restarts is a Sink that keeps every Start.
type restarts struct {
	collect
	starts [][]media.Track
}

func (r *restarts) Start(t []media.Track) error {
	r.starts = append(r.starts, t)
	return r.collect.Start(t)
}

// packetTimes returns the times of the packets of one stream that players
// play, in order: ffprobe's packets but those an MP4 edit list hides (its
// discard flag), such as the AAC encoder's priming.
func packetTimes(t *testing.T, path, stream string) []time.Duration {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", path)
	var ts []time.Duration
	for l := range strings.FieldsSeq(string(out)) {
		pts, flags, _ := strings.Cut(l, ",")
		if strings.Contains(flags, "D") {
			continue
		}
		v, err := strconv.ParseFloat(pts, 64)
		if err != nil {
			t.Fatalf("ffprobe time %q", l)
		}
		ts = append(ts, time.Duration(math.Round(v*1e9)))
	}
	return ts
}

// TestLacedAudioFramesKeepTheirTimes: mkvmerge puts several AAC frames in
// one block; each comes out at its own time (as in the file it laced), not
// the block's.
func TestLacedAudioFramesKeepTheirTimes(t *testing.T) {
	path := mediatest.Fixture(t, "laced.mkv")
	src, closer, err := Open(path, Options{Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var got collect
	if err := src.Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	want := packetTimes(t, mediatest.Fixture(t, "laced-source.mkv"), "a:0")
	var audio []time.Duration
	for _, f := range got.frames {
		if f.Track == 2 {
			audio = append(audio, f.PTS)
		}
	}
	if len(audio) != len(want) || len(want) < 100 {
		t.Fatalf("%d audio frames, ffprobe %d", len(audio), len(want))
	}
	shared := 0
	for i := range want {
		if d := audio[i] - want[i]; d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("audio frame %d at %v, ffprobe says %v", i, audio[i], want[i])
		}
		if i > 0 && audio[i] == audio[i-1] {
			shared++
		}
	}
	if shared > 0 {
		t.Fatalf("%d audio frames share a time", shared)
	}
}

// TestMatroskaNewHeaderStartsAgain: `cat a.mkv b.mkv` with a different
// picture size starts the sink again with b's tracks before b's frames;
// a repeated identical header does not.
func TestMatroskaNewHeaderStartsAgain(t *testing.T) {
	a, b := mediatest.ReadFixture(t, "size-a.mkv"), mediatest.ReadFixture(t, "size-b.mkv")
	var got restarts
	if err := (&Matroska{R: bytes.NewReader(append(append(append([]byte(nil), a...), a...), b...))}).Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.starts) != 2 || got.starts[0][0].Width != 320 || got.starts[1][0].Width != 480 ||
		bytes.Equal(got.starts[0][0].CodecPrivate, got.starts[1][0].CodecPrivate) {
		t.Fatalf("starts: %+v", got.starts)
	}
	if n := got.count(1); n != 3*60 {
		t.Fatalf("%d video frames, want 180", n)
	}
}

// TestAudioOnlyInEveryContainer: AAC alone, in Matroska, MPEG-TS and MP4,
// is one audio track and all the frames players play (in the MP4, not the
// AAC priming its edit list hides).
func TestAudioOnlyInEveryContainer(t *testing.T) {
	for _, name := range []string{"aac.mkv", "aac.ts", "aac.mp4"} {
		t.Run(name, func(t *testing.T) {
			path := mediatest.Fixture(t, name)
			src, closer, err := Open(path, Options{Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			var got collect
			if err := src.Run(context.Background(), &got); err != nil {
				t.Fatal(err)
			}
			want := len(packetTimes(t, path, "a:0"))
			if len(got.tracks) != 1 || got.tracks[0].Kind != media.KindAudio || got.tracks[0].Number != 1 ||
				got.tracks[0].SampleRate != 48000 || got.count(1) != want {
				t.Fatalf("tracks %+v, %d frames, ffprobe %d", got.tracks, got.count(1), want)
			}
		})
	}
}
