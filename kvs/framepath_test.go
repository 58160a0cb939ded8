package kvs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// epoch0 is the wall clock the test paths start at.
var epoch0 = time.Unix(1704067200, 0)

const ms = time.Millisecond

var (
	videoTrack = media.Track{Number: 1, Kind: media.KindVideo, CodecID: media.CodecH264, CodecPrivate: []byte{1, 2, 3}, Width: 320, Height: 240}
	audioTrack = media.Track{Number: 2, Kind: media.KindAudio, CodecID: media.CodecAAC, CodecPrivate: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 1}
)

// recorder is a fragmentSink that keeps what the frame path makes.
type recorder struct {
	frags []*recFragment
}

type recFragment struct {
	tc       int64
	header   []byte
	data     []byte
	frames   int
	complete bool
}

func (r *recorder) startFragment(tc int64, header []byte) {
	if n := len(r.frags); n > 0 {
		r.frags[n-1].complete = true
	}
	r.frags = append(r.frags, &recFragment{tc: tc, header: header})
}

func (r *recorder) appendFragment(p []byte) {
	f := r.frags[len(r.frags)-1]
	f.data = append(f.data, p...)
}

func (r *recorder) frameWritten() { r.frags[len(r.frags)-1].frames++ }
func (r *recorder) endFragment() {
	if len(r.frags) > 0 {
		r.frags[len(r.frags)-1].complete = true
	}
}

// block is a frame as it came out: its track, absolute time (ms), key
// flag, its fragment and its relative timecode.
type block struct {
	track    uint64
	at       int64
	key      bool
	fragment int
	rel      int16
	data     string
}

// blocks demuxes every fragment behind its own header, checking what KVS
// and players rely on: fragment timecodes strictly increase, every block is
// at or after its fragment's start, and the header parses.
func (r *recorder) blocks(t testing.TB) []block {
	t.Helper()
	var out []block
	for i, f := range r.frags {
		if i > 0 && f.tc <= r.frags[i-1].tc {
			t.Fatalf("fragment %d at %d after %d", i, f.tc, r.frags[i-1].tc)
		}
		d := mkv.NewDemuxer(io.MultiReader(bytes.NewReader(f.header), bytes.NewReader(f.data)))
		n := 0
		for {
			ev, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			switch ev.Type {
			case mkv.EventHeader:
				for _, tr := range ev.Header.Tracks {
					if tr.UID == 0 || tr.Number == 0 {
						t.Fatalf("fragment %d: track %d with UID %d", i, tr.Number, tr.UID)
					}
				}
			case mkv.EventCluster:
				if ev.Timecode != f.tc {
					t.Fatalf("fragment %d: cluster timecode %d, started at %d", i, ev.Timecode, f.tc)
				}
			case mkv.EventBlock:
				if ev.Block.Timecode < 0 {
					t.Fatalf("fragment %d: negative relative timecode %d", i, ev.Block.Timecode)
				}
				out = append(out, block{ev.Block.Track, ev.Timecode, ev.Key, i, ev.Block.Timecode, string(ev.Block.Frames[0])})
				n++
			}
		}
		if n != f.frames {
			t.Fatalf("fragment %d: %d blocks, %d frames counted", i, n, f.frames)
		}
	}
	return out
}

type testPath struct {
	*framePath
	rec    *recorder
	stats  *Stats
	events []Event
	warns  []string
}

func newTestPath(t testing.TB, tracks ...media.Track) *testPath {
	t.Helper()
	tp := &testPath{rec: &recorder{}, stats: &Stats{}}
	tp.framePath = newFramePath(pathConfig{Now: func() time.Time { return epoch0 }, Window: time.Second, Jump: time.Second,
		AudioFragment: 2 * time.Second}, tp.rec, tp.stats, func(_, m string) { tp.warns = append(tp.warns, m) },
		func(e Event) { tp.events = append(tp.events, e) })
	if err := tp.setTracks(tracks, [16]byte{1}); err != nil {
		t.Fatal(err)
	}
	return tp
}

func (tp *testPath) frame(t testing.TB, track uint8, pts, dts time.Duration, key bool, data string) {
	t.Helper()
	if err := tp.put(media.Frame{Track: track, PTS: pts, DTS: dts, Key: key, Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
}

// abs is where the path puts a source time when the first frame (at
// first) was at the wall clock epoch0.
func abs(first, src time.Duration) int64 { return (epoch0.UnixNano() + int64(src-first)) / 1e6 }

// avSource is a camera with audio: 30 fps video with a key frame every
// second, AAC every 21.333 ms starting 21 ms before the video, the audio
// delivered late by lag (as muxers interleave it).
func avSource(seconds int, lag time.Duration) []media.Frame {
	var video, audio []media.Frame
	for i := range 30 * seconds {
		ts := time.Duration(i) * time.Second / 30
		video = append(video, media.Frame{Track: 1, PTS: ts, DTS: ts, Key: i%30 == 0, Data: []byte(fmt.Sprintf("v%d", i))})
	}
	for i := 0; ; i++ {
		ts := time.Duration(i)*1024*time.Second/48000 - 21*ms
		if ts >= time.Duration(seconds)*time.Second {
			break
		}
		audio = append(audio, media.Frame{Track: 2, PTS: ts, DTS: ts, Key: true, Data: []byte(fmt.Sprintf("a%d", i))})
	}
	var out []media.Frame
	for len(video) > 0 || len(audio) > 0 {
		if len(audio) == 0 || (len(video) > 0 && video[0].DTS <= audio[0].DTS+lag) {
			out, video = append(out, video[0]), video[1:]
		} else {
			out, audio = append(out, audio[0]), audio[1:]
		}
	}
	return out
}

// TestAudioAroundKeyFramesKeepsItsTime: audio just before a video key
// frame goes in the fragment before it, audio before the first key frame
// opens the first fragment, every frame comes out once at its own time,
// and fragments start at the key frames.
func TestAudioAroundKeyFramesKeepsItsTime(t *testing.T) {
	for _, lag := range []time.Duration{0, 300 * ms, -300 * ms} {
		t.Run(fmt.Sprintf("audio %s behind", lag), func(t *testing.T) {
			tp := newTestPath(t, videoTrack, audioTrack)
			src := avSource(4, lag)
			for _, f := range src {
				tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, string(f.Data))
			}
			if err := tp.end(); err != nil {
				t.Fatal(err)
			}
			got := tp.rec.blocks(t)
			if len(got) != len(src) || tp.stats.Lost.Total() != 0 {
				t.Fatalf("%d frames out of %d, lost %+v", len(got), len(src), tp.stats.Lost)
			}
			// Times relative to the earliest frame: the source's.
			origin := src[0].PTS
			for _, f := range src {
				origin = min(origin, f.PTS)
			}
			byData := map[string]time.Duration{}
			for _, f := range src {
				byData[string(f.Data)] = f.PTS - origin
			}
			base := got[0].at - byData[got[0].data].Milliseconds()
			for _, b := range got {
				want := byData[b.data]
				if d := b.at - base - want.Milliseconds(); d < -1 || d > 1 {
					t.Fatalf("%s at %d ms, source %v", b.data, b.at-base, want)
				}
			}
			var starts []int64
			for _, f := range tp.rec.frags {
				starts = append(starts, f.tc-base)
			}
			// The first fragment opens with the audio 21 ms before the video.
			if want := []int64{0, 1021, 2021, 3021}; !slices.Equal(starts, want) {
				t.Fatalf("fragments start at %v, want %v", starts, want)
			}
			for _, b := range got {
				f := tp.rec.frags[b.fragment]
				next := int64(1 << 62)
				if b.fragment+1 < len(tp.rec.frags) {
					next = tp.rec.frags[b.fragment+1].tc
				}
				if b.at < f.tc || b.at >= next {
					t.Fatalf("%s at %d is in fragment %d [%d, %d)", b.data, b.at-base, b.fragment, f.tc-base, next-base)
				}
			}
		})
	}
}

// TestKeyFrameWithoutReorderingStartsAtOnce: a camera without B-frames
// (PTS = DTS) gets its fragment started by the key frame itself, not one
// frame later.
func TestKeyFrameWithoutReorderingStartsAtOnce(t *testing.T) {
	tp := newTestPath(t, videoTrack)
	tp.frame(t, 1, 0, 0, true, "k0")
	if len(tp.rec.frags) != 1 || tp.rec.frags[0].frames != 1 {
		t.Fatalf("the first key frame did not go out at once: %d fragments", len(tp.rec.frags))
	}
	tp.frame(t, 1, 33*ms, 33*ms, false, "p1")
	tp.frame(t, 1, time.Second, time.Second, true, "k1")
	if len(tp.rec.frags) != 2 || tp.rec.frags[1].frames != 1 {
		t.Fatalf("the second key frame did not go out at once: %d fragments", len(tp.rec.frags))
	}
}

// TestLeadingPicturesStartTheFragment: an open GOP's key frame is held
// until a frame presented after it arrives; its fragment starts at the
// earliest of it and its leading pictures, so every block is at or after
// the fragment's start and nothing is dropped.
func TestLeadingPicturesStartTheFragment(t *testing.T) {
	tp := newTestPath(t, videoTrack)
	f := 100 * ms
	// Decoding order with presentation times (in frames): I0 P3 B1 B2 |
	// CRA6 B4 B5 (leading) P9 B7 B8. DTS run one frame behind, as
	// MPEG-TS muxers write them.
	seq := []struct {
		pts  int
		key  bool
		name string
	}{{0, true, "I0"}, {3, false, "P3"}, {1, false, "B1"}, {2, false, "B2"},
		{6, true, "CRA6"}, {4, false, "B4"}, {5, false, "B5"}, {9, false, "P9"}, {7, false, "B7"}, {8, false, "B8"}}
	for i, s := range seq {
		tp.frame(t, 1, time.Duration(s.pts)*f, time.Duration(i-1)*f, s.key, s.name)
		if s.name == "B5" && len(tp.rec.frags) != 1 {
			t.Fatal("the CRA's fragment started before its leading pictures were in")
		}
	}
	if len(tp.rec.frags) != 2 {
		t.Fatalf("%d fragments after a frame presented after the CRA", len(tp.rec.frags))
	}
	if err := tp.end(); err != nil {
		t.Fatal(err)
	}
	got := tp.rec.blocks(t)
	if len(got) != len(seq) || tp.stats.Lost.Total() != 0 {
		t.Fatalf("%d blocks of %d, lost %+v", len(got), len(seq), tp.stats.Lost)
	}
	second := tp.rec.frags[1].tc - tp.rec.frags[0].tc
	if second != 400 {
		t.Fatalf("the CRA's fragment starts %d ms after the first; its first leading picture is at 400", second)
	}
	var names []string
	for _, b := range got {
		names = append(names, b.data)
	}
	if !slices.Equal(names, []string{"I0", "P3", "B1", "B2", "CRA6", "B4", "B5", "P9", "B7", "B8"}) {
		t.Fatalf("decoding order changed: %v", names)
	}
}

// TestDiscontinuities: timestamps that jump back (cat a.ts b.ts) or ahead
// (-output_ts_offset 600) are re-based to follow the stream: fragments keep
// increasing, tracks stay in sync, the jump is reported once, and video
// spliced after its key frame is counted lost up to the next key frame.
func TestDiscontinuities(t *testing.T) {
	clip := func(start time.Duration, skipVideo int) []media.Frame {
		var out []media.Frame
		for _, f := range avSource(2, 0) {
			if f.Track == 1 {
				if skipVideo > 0 {
					skipVideo--
					continue
				}
			}
			f.PTS += start
			f.DTS += start
			out = append(out, f)
		}
		return out
	}
	for _, c := range []struct {
		name       string
		second     time.Duration
		skip       int
		lostVideo  int64
		lostAudio  int64
		back       bool
		wantMsgSub string
	}{
		{"back", 0, 0, 0, 0, true, "jumped back by 2"},
		{"back mid-GOP", 0, 10, 20, 0, true, "jumped back"},
		{"ahead", 600 * time.Second, 0, 0, 0, false, "jumped ahead by 9m5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTestPath(t, videoTrack, audioTrack)
			a, b := clip(0, 0), clip(c.second, c.skip)
			for _, f := range a {
				tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, "A"+string(f.Data))
			}
			for _, f := range b {
				tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, "B"+string(f.Data))
			}
			if err := tp.end(); err != nil {
				t.Fatal(err)
			}
			got := tp.rec.blocks(t)
			// One message for the jump; and one for the video lost after it,
			// if any.
			events := 1
			if c.lostVideo > 0 {
				events = 2
			}
			if tp.stats.Discontinuities != 1 || len(tp.events) != events || tp.events[0].Type != EventDiscontinuity ||
				!bytes.Contains([]byte(tp.events[0].Message), []byte(c.wantMsgSub)) ||
				events == 2 && (tp.events[1].Type != EventWarning || !strings.Contains(tp.events[1].Message, "does not start at a key frame")) {
				t.Fatalf("%d discontinuities, events %v", tp.stats.Discontinuities, tp.events)
			}
			if tp.stats.Lost.Discontinuity != c.lostVideo || tp.stats.Lost.Total() != c.lostVideo {
				t.Fatalf("lost %+v, want %d after the jump", tp.stats.Lost, c.lostVideo)
			}
			if len(got) != len(a)+len(b)-int(c.lostVideo) {
				t.Fatalf("%d frames out, %d in, %d lost", len(got), len(a)+len(b), c.lostVideo)
			}
			// The second clip follows the first, in sync, without a gap
			// longer than a frame or two.
			var lastA, firstB, firstBAudio, firstBVideo int64 = 0, 1 << 62, 0, 0
			for _, blk := range got {
				if blk.data[0] == 'A' {
					lastA = max(lastA, blk.at)
					continue
				}
				firstB = min(firstB, blk.at)
				if blk.track == 2 && firstBAudio == 0 {
					firstBAudio = blk.at
				}
				if blk.track == 1 && firstBVideo == 0 {
					firstBVideo = blk.at
				}
			}
			if firstB <= lastA || firstB-lastA > 70 {
				t.Fatalf("the second clip starts %d ms after the first ends", firstB-lastA)
			}
			if c.skip == 0 && firstBVideo-firstBAudio != 21 {
				t.Fatalf("after the jump, video starts %d ms after audio; the source had 21", firstBVideo-firstBAudio)
			}
		})
	}
}

// TestAudioOnlyFragmentsByTime: without video, a fragment every 2 s of
// audio, not one per (key) audio frame.
func TestAudioOnlyFragmentsByTime(t *testing.T) {
	tp := newTestPath(t, audioTrack)
	n := 0
	for ts := time.Duration(0); ts < 7*time.Second; ts += 1024 * time.Second / 48000 {
		tp.frame(t, 2, ts, ts, true, fmt.Sprint(n))
		n++
	}
	if err := tp.end(); err != nil {
		t.Fatal(err)
	}
	got := tp.rec.blocks(t)
	if len(got) != n || len(tp.rec.frags) != 4 || tp.stats.Lost.Total() != 0 {
		t.Fatalf("%d frames of %d in %d fragments, lost %+v", len(got), n, len(tp.rec.frags), tp.stats.Lost)
	}
	for i := 1; i < len(tp.rec.frags); i++ {
		if d := tp.rec.frags[i].tc - tp.rec.frags[i-1].tc; d < 2000 || d > 2022 {
			t.Fatalf("fragment %d is %d ms long", i-1, d)
		}
	}
}

// TestNewHeaderStartsAFragment: new tracks mid-stream: the fragments
// before keep the old header, those after carry the new codec private
// data; the stream goes on without a gap.
func TestNewHeaderStartsAFragment(t *testing.T) {
	tp := newTestPath(t, videoTrack, audioTrack)
	for _, f := range avSource(2, 0) {
		tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, string(f.Data))
	}
	bigger := videoTrack
	bigger.Width, bigger.Height, bigger.CodecPrivate = 640, 480, []byte{9, 9, 9}
	if err := tp.setTracks([]media.Track{bigger, audioTrack}, [16]byte{1}); err != nil {
		t.Fatal(err)
	}
	before := len(tp.rec.frags)
	if !tp.rec.frags[before-1].complete {
		t.Fatal("the last fragment under the old header was not completed")
	}
	for _, f := range avSource(2, 0) { // its timestamps start again
		tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, string(f.Data))
	}
	if err := tp.end(); err != nil {
		t.Fatal(err)
	}
	got := tp.rec.blocks(t)
	if want := 2 * len(avSource(2, 0)); len(got) != want || tp.stats.Lost.Total() != 0 {
		t.Fatalf("%d frames of %d, lost %+v", len(got), want, tp.stats.Lost)
	}
	for i, f := range tp.rec.frags {
		h, _ := mkv.NewDemuxer(bytes.NewReader(f.header)).Next()
		_ = h
		newHeader := bytes.Contains(f.header, []byte{9, 9, 9})
		if newHeader != (i >= before) {
			t.Fatalf("fragment %d of %d: new header %v", i, len(tp.rec.frags), newHeader)
		}
	}
}

// TestQuietTrackDoesNotHoldTheOthers: when a camera's audio stops, video
// goes on after at most the interleaving window.
func TestQuietTrackDoesNotHoldTheOthers(t *testing.T) {
	tp := newTestPath(t, videoTrack, audioTrack)
	for _, f := range avSource(1, 0) {
		tp.frame(t, f.Track, f.PTS, f.DTS, f.Key, string(f.Data))
	}
	written := func() int {
		n := 0
		for _, f := range tp.rec.frags {
			n += f.frames
		}
		return n
	}
	for i := 30; i < 90; i++ { // two more seconds of video, no audio
		ts := time.Duration(i) * time.Second / 30
		tp.frame(t, 1, ts, ts, i%30 == 0, fmt.Sprint(i))
	}
	queued := len(avSource(1, 0)) + 60 - written()
	if queued > 32 {
		t.Fatalf("%d frames held back by a track that went quiet", queued)
	}
}

// TestFramesBeforeTheFirstKeyFrame: video before the first key frame, and
// audio more than the window before it, are counted lost, not sent.
func TestFramesBeforeTheFirstKeyFrame(t *testing.T) {
	tp := newTestPath(t, videoTrack, audioTrack)
	for i := range 60 {
		ts := time.Duration(i) * 50 * ms
		tp.frame(t, 2, ts, ts, true, "a")
		if i%2 == 0 {
			tp.frame(t, 1, ts, ts, i == 40, "v") // the key frame comes at 2 s
		}
	}
	if err := tp.end(); err != nil {
		t.Fatal(err)
	}
	got := tp.rec.blocks(t)
	// Video 0..38 (20 frames) lost; audio before 1 s lost (20 frames).
	if tp.stats.Lost.BeforeKeyFrame != 40 || len(got) != 60+30-40 {
		t.Fatalf("lost %+v, %d frames out", tp.stats.Lost, len(got))
	}
	if start := tp.rec.frags[0].tc - abs(0, 0); start != 1000 {
		t.Fatalf("the first fragment starts at %d ms, want 1000 (the window before the key frame)", start)
	}
}

// discardSink is a fragmentSink that keeps nothing.
type discardSink struct{}

func (discardSink) startFragment(int64, []byte) {}
func (discardSink) appendFragment([]byte)       {}
func (discardSink) frameWritten()               {}
func (discardSink) endFragment()                {}

// BenchmarkInterleavedAV: one op is one frame of a 30 fps video with AAC
// audio (audio delivered 300 ms late, so frames wait in the interleaver)
// through timeline, interleaver, fragmenter and Matroska writer. Steady
// state allocates nothing.
func BenchmarkInterleavedAV(b *testing.B) {
	src := avSource(60, 300*ms)
	video := make([]byte, 4096)
	stats := &Stats{}
	fp := newFramePath(pathConfig{Now: func() time.Time { return epoch0 }, Window: time.Second, Jump: time.Second,
		AudioFragment: 2 * time.Second}, discardSink{}, stats, func(string, string) {}, func(Event) {})
	if err := fp.setTracks([]media.Track{videoTrack, audioTrack}, [16]byte{1}); err != nil {
		b.Fatal(err)
	}
	span := 60 * time.Second
	put := func(i int) {
		f := src[i%len(src)]
		shift := time.Duration(i/len(src)) * span
		f.PTS, f.DTS = f.PTS+shift, f.DTS+shift
		if f.Track == 1 {
			f.Data = video
		}
		if err := fp.put(f); err != nil {
			b.Fatal(err)
		}
	}
	for i := range len(src) {
		put(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		put(len(src) + i)
	}
	b.StopTimer()
	if stats.Lost.Total() != 0 {
		b.Fatalf("lost %+v", stats.Lost)
	}
}

// TestFramePathAllocatesNothingPerFrame: once warm, a frame of audio or
// video through the whole frame path (frames waiting in the interleaver
// included) allocates nothing.
func TestFramePathAllocatesNothingPerFrame(t *testing.T) {
	src := avSource(10, 300*ms)
	fp := newFramePath(pathConfig{Now: func() time.Time { return epoch0 }, Window: time.Second, Jump: time.Second,
		AudioFragment: 2 * time.Second}, discardSink{}, &Stats{}, func(string, string) {}, func(Event) {})
	if err := fp.setTracks([]media.Track{videoTrack, audioTrack}, [16]byte{1}); err != nil {
		t.Fatal(err)
	}
	video := make([]byte, 20000)
	i := 0
	step := func() {
		f := src[i%len(src)]
		shift := time.Duration(i/len(src)) * 10 * time.Second
		f.PTS, f.DTS = f.PTS+shift, f.DTS+shift
		if f.Track == 1 {
			f.Data = video
		}
		if err := fp.put(f); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 2 * len(src) {
		step()
	}
	// testing.AllocsPerRun rounds down: one allocation every other frame
	// would read 0. Count them all instead.
	const runs = 3000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		step()
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n > runs/100 {
		t.Fatalf("%d allocations in %d frames", n, runs)
	}
}
