package playback

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

var epoch = time.UnixMilli(1_700_000_000_123)

func parseAll(t testing.TB, header []byte, bodies [][]byte) []*Fragment {
	t.Helper()
	frags := make([]*Fragment, len(bodies))
	for i, b := range bodies {
		f, err := ParseFragment(header, b)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		frags[i] = f
	}
	return frags
}

// baseOf is where a test fragment starts: its Cluster timecode.
func baseOf(t testing.TB, body []byte) int64 {
	t.Helper()
	// AppendClusterStart: ID (4), size (1), Timecode ID (1), size (1), 8 bytes.
	var tc int64
	for _, b := range body[7:15] {
		tc = tc<<8 | int64(b)
	}
	return tc
}

func fmp4File(t testing.TB, header []byte, bodies [][]byte, tracks []uint64) string {
	t.Helper()
	frags := parseAll(t, header, bodies)
	var sel []*Track
	for _, n := range tracks {
		sel = append(sel, frags[0].Track(n))
	}
	out, err := InitSegment(sel)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frags {
		seg, err := MediaSegment(f, tracks, Placement{BaseMS: baseOf(t, bodies[i]), Sequence: uint32(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seg...)
	}
	return writeTemp(t, "out.mp4", out)
}

func tsFile(t testing.TB, header []byte, bodies [][]byte) string {
	t.Helper()
	var out []byte
	for i, f := range parseAll(t, header, bodies) {
		seg, err := TSSegment(f, Placement{BaseMS: baseOf(t, bodies[i])})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seg...)
	}
	return writeTemp(t, "out.ts", out)
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type packet struct{ pts, dts int64 }

// packets lists a stream's packets as ffprobe reads them (time base ticks).
func packets(t testing.TB, path, stream string) []packet {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts,dts", "-of", "csv=p=0", path)
	var ps []packet
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue // side data
		}
		f := strings.Split(line, ",")
		if len(f) < 2 {
			t.Fatalf("ffprobe packet line %q", line)
		}
		pts, err1 := strconv.ParseInt(f[0], 10, 64)
		dts, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("ffprobe packet line %q: a timestamp is missing", line)
		}
		ps = append(ps, packet{pts, dts})
	}
	return ps
}

// checkTimeline: decoding times strictly increase, no frame is presented
// before it is decoded, and presentation times are all distinct.
func checkTimeline(t *testing.T, what string, ps []packet) {
	t.Helper()
	seen := map[int64]bool{}
	for i, p := range ps {
		if i > 0 && p.dts <= ps[i-1].dts {
			t.Fatalf("%s: packet %d decodes at %d, not after the previous one (%d)", what, i, p.dts, ps[i-1].dts)
		}
		if p.pts < p.dts {
			t.Fatalf("%s: packet %d is presented (%d) before it is decoded (%d)", what, i, p.pts, p.dts)
		}
		if seen[p.pts] {
			t.Fatalf("%s: two packets presented at %d", what, p.pts)
		}
		seen[p.pts] = true
	}
}

// avOffset is how much later audio starts than video, in milliseconds.
func avOffset(t *testing.T, path string) float64 {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-show_entries", "stream=codec_type,start_time", "-of", "csv=p=0", path)
	var v, a float64
	var haveV, haveA bool
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 2 {
			continue
		}
		x, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("ffprobe start_time %q", line)
		}
		switch f[0] {
		case "video":
			v, haveV = x, true
		case "audio":
			a, haveA = x, true
		}
	}
	if !haveV || !haveA {
		t.Fatalf("%s: no audio or no video stream: %s", path, out)
	}
	return (a - v) * 1000
}

// sameAudio: every decoded audio frame of the source comes back. The
// source's Matroska trims the encoder's priming frame (CodecDelay), which
// a remux without an edit list plays: one extra frame may lead.
func sameAudio(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(want) == 0 || len(got) < len(want) || len(got) > len(want)+1 || !slices.Equal(got[len(got)-len(want):], want) {
		t.Fatalf("%s: %d audio frames decoded, the source has %d, or they differ", what, len(got), len(want))
	}
}

// TestRemuxEveryFrame remuxes clips from the encoder settings cameras and
// pipelines use into fMP4 (one file with both tracks, and one per track as
// HLS serves them) and MPEG-TS, cut into fragments as the producer cuts
// them, and checks with ffmpeg that every frame decodes identically to the
// source and that the timestamps are a valid timeline.
func TestRemuxEveryFrame(t *testing.T) {
	cases := []struct {
		name  string
		video []string
		audio bool
	}{
		{"h264-bpyramid-aac", x264BPyramid, true},
		{"h264-open-gop", x264OpenGOP, false},
		{"h265-open-gop-aac", x265Default, true},
		{"h264-baseline", x264Baseline, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := encode(t, c.video, c.audio)
			header, bodies := kvsFragments(t, src, epoch)
			if len(bodies) < 3 {
				t.Fatalf("%d fragments; the clip should make 4", len(bodies))
			}
			wantV := mediatest.FrameMD5(t, src.path, nil, "", "v:0")
			var wantA []string
			tracks := []uint64{1}
			if c.audio {
				wantA = mediatest.FrameMD5(t, src.path, nil, "", "a:0")
				tracks = append(tracks, 2)
			}

			both := fmp4File(t, header, bodies, tracks)
			if got := mediatest.FrameMD5(t, both, nil, "", "v:0"); !slices.Equal(got, wantV) {
				t.Fatalf("fMP4: %d video frames decoded, the source has %d, or they differ", len(got), len(wantV))
			}
			checkTimeline(t, "fMP4 video", packets(t, both, "v:0"))
			ts := tsFile(t, header, bodies)
			if got := mediatest.FrameMD5(t, ts, nil, "", "v:0"); !slices.Equal(got, wantV) {
				t.Fatalf("MPEG-TS: %d video frames decoded, the source has %d, or they differ", len(got), len(wantV))
			}
			checkTimeline(t, "MPEG-TS video", packets(t, ts, "v:0"))
			videoOnly := fmp4File(t, header, bodies, []uint64{1})
			if got := mediatest.FrameMD5(t, videoOnly, nil, "", "v:0"); !slices.Equal(got, wantV) {
				t.Fatalf("fMP4 video track alone: %d frames decoded, the source has %d, or they differ", len(got), len(wantV))
			}
			if !c.audio {
				return
			}
			// Audio and video stay in sync as in the source.
			want := avOffset(t, src.path)
			for _, f := range []string{both, ts} {
				if got := avOffset(t, f); got < want-2 || got > want+2 {
					t.Fatalf("%s: audio starts %.1f ms after video, in the source %.1f ms", filepath.Ext(f), got, want)
				}
			}
			sameAudio(t, "fMP4", wantA, mediatest.FrameMD5(t, both, nil, "", "a:0"))
			sameAudio(t, "MPEG-TS", wantA, mediatest.FrameMD5(t, ts, nil, "", "a:0"))
			audioOnly := fmp4File(t, header, bodies, []uint64{2})
			sameAudio(t, "fMP4 audio track alone", wantA, mediatest.FrameMD5(t, audioOnly, nil, "", "a:0"))
			if wantP, gotP := mediatest.PacketMD5(t, src.path, nil, "", "a:0"), mediatest.PacketMD5(t, audioOnly, nil, "", "a:0"); !slices.Equal(gotP, wantP) {
				t.Fatalf("fMP4 audio: %d packets, the source has %d, or their bytes differ", len(gotP), len(wantP))
			}
			checkTimeline(t, "fMP4 audio", packets(t, audioOnly, "a:0"))
		})
	}
}
