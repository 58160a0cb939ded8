package source

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// The sources' fuzz targets with timestamps that jump: backwards, forwards,
// across the 33-bit wrap of the MPEG-TS clock. Whatever the timestamps,
// a source must not panic or hang, must hand on frames in decoding order,
// and must report every frame it does not hand on; a paced source must
// never sleep on a jump.

// fixtureAUs returns the first n access units of the baseline fixture (key
// frames at 0 and 25), copied.
func fixtureAUs(t testing.TB, n int) ([][][]byte, *codec.Params) {
	t.Helper()
	r := codec.NewAnnexBReader(bytes.NewReader(mediatest.ReadFixture(t, "h264-baseline.h264")), codec.H264)
	params := &codec.Params{Codec: codec.H264}
	var aus [][][]byte
	for len(aus) < n {
		au, err := r.ReadAccessUnit()
		if err != nil {
			t.Fatal(err)
		}
		cp := make([][]byte, len(au))
		for i, nalu := range au {
			cp[i] = append([]byte(nil), nalu...)
		}
		_, _ = params.Update(cp)
		aus = append(aus, cp)
	}
	return aus, params
}

// jumpStep turns a fuzz byte into a timestamp step in 90 kHz ticks: mostly
// a frame at 30 fps, sometimes a jump.
func jumpStep(b byte) int64 {
	switch b % 16 {
	case 0:
		return 600 * 90000 // forward, like -output_ts_offset 600
	case 1:
		return -3 * 90000 // back, like cat a.ts b.ts
	case 2:
		return 1<<33 - 3000 // backwards by one frame across the wrap
	case 3:
		return int64(b) * 9000 // a gap of up to 2.3 s
	case 4:
		return 0
	default:
		return 3000
	}
}

func FuzzMPEGTSTimestamps(f *testing.F) {
	f.Add([]byte{5, 5, 5, 5, 5, 0, 5, 5, 5, 5}, uint64(0))
	f.Add([]byte{5, 5, 5, 5, 1, 5, 5, 5, 5, 5, 5, 1}, uint64(1<<33-5*3000))
	f.Add([]byte{5, 5, 2, 5, 5, 3, 5, 4, 5, 0, 1}, uint64(1<<32))
	aus, _ := fixtureAUs(f, 30)
	f.Fuzz(func(t *testing.T, steps []byte, start uint64) {
		if len(steps) > 60 {
			steps = steps[:60]
		}
		video := &mpegts.Track{Codec: &tscodecs.H264{}}
		audio := &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 1}}}
		var ts bytes.Buffer
		w := &mpegts.Writer{W: &ts, Tracks: []*mpegts.Track{video, audio}}
		if err := w.Initialize(); err != nil {
			t.Fatal(err)
		}
		var (
			want      [][]byte // video as the source must hand it on
			wantAudio [][]byte
			wantDelta []int64 // the video's timestamp steps, as the 33-bit clock gives them
			pts       = int64(start & (1<<33 - 1))
		)
		hasKey := false
		for i, s := range steps {
			// A real stream, starting where the first byte says: before its
			// first key frame, or at it.
			au := aus[(i+int(steps[0]))%len(aus)]
			hasKey = hasKey || codec.H264.IsKey(au)
			if i > 0 {
				d := jumpStep(s)
				pts += d
				// The 33-bit clock cannot tell a step from one 2^33 away:
				// the shorter way round is what it means.
				d &= 1<<33 - 1
				if d >= 1<<32 {
					d -= 1 << 33
				}
				wantDelta = append(wantDelta, d)
			}
			wrapped := pts & (1<<33 - 1)
			if err := w.WriteH264(video, wrapped, wrapped, au); err != nil {
				t.Fatal(err)
			}
			want = append(want, codec.H264.AppendLengthPrefixed(nil, au))
			a := []byte{0x21, byte(i), s, 0x42}
			if err := w.WriteMPEG4Audio(audio, wrapped, [][]byte{a}); err != nil {
				t.Fatal(err)
			}
			wantAudio = append(wantAudio, a)
		}
		clock := newFakeClock()
		src := &MPEGTS{R: bytes.NewReader(ts.Bytes()), Pace: true, Now: clock.now, sleep: clock.sleep}
		var got collect
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := src.Run(ctx, &got)
		if ctx.Err() != nil {
			t.Fatal("the source hung")
		}
		if len(steps) == 0 {
			return
		}
		if !hasKey {
			// No parameter sets ever: an error that says so, or nothing.
			if err == nil && len(got.frames) > 0 {
				t.Fatal("frames without a key frame")
			}
			return
		}
		if err != nil {
			t.Fatalf("a valid stream failed: %v", err)
		}
		// Video: every access unit, in order, from the first key frame on;
		// the ones before it reported.
		var gotVideo, gotAudio []media.Frame
		for _, fr := range got.frames {
			if fr.Track == 1 {
				gotVideo = append(gotVideo, fr)
			} else {
				gotAudio = append(gotAudio, fr)
			}
		}
		skipped := len(want) - len(gotVideo)
		if skipped < 0 || got.drops[1] != skipped {
			t.Fatalf("%d of %d access units handed on, %d reported lost", len(gotVideo), len(want), got.drops[1])
		}
		for i, fr := range gotVideo {
			if !bytes.Equal(fr.Data, want[skipped+i]) {
				t.Fatalf("video frame %d is not access unit %d", i, skipped+i)
			}
			if i > 0 && (fr.DTS-gotVideo[i-1].DTS-ticks90k(wantDelta[skipped+i-1])).Abs() > time.Microsecond {
				t.Fatalf("video frame %d: step %v, the stream's is %v", i, fr.DTS-gotVideo[i-1].DTS, ticks90k(wantDelta[skipped+i-1]))
			}
		}
		if len(gotAudio)+got.drops[2] != len(wantAudio) {
			t.Fatalf("%d of %d audio frames handed on, %d reported lost", len(gotAudio), len(wantAudio), got.drops[2])
		}
		for i, fr := range gotAudio {
			if !bytes.Equal(fr.Data, wantAudio[len(wantAudio)-len(gotAudio)+i]) {
				t.Fatalf("audio frame %d out of order", i)
			}
		}
		// Normal steps are a frame at 30 fps: nothing longer than the first
		// limit is ever slept.
		if clock.longest() > startDiscontinuity {
			t.Fatalf("slept %v at once", clock.longest())
		}
	})
}

// fuzzMP4 builds an MP4 from fuzz bytes: a video track (and, if asked, an
// audio one) with the given steps, composition offsets, sync samples, NAL
// length size, edit list and layout.
func fuzzMP4(t testing.TB, avcC []byte, asc []byte, data []byte) ([]byte, int) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	movieScale := []uint32{1000, 600, 90000, 1}[next()%4]
	vScale := []uint32{15360, 90000, 30, 1, 48000}[next()%5]
	lengthSize := []int{4, 2, 1}[next()%3]
	flags := next()
	cfg := append([]byte(nil), avcC...)
	cfg[4] = 0xfc | byte(lengthSize-1)
	v := testTrack{handler: "vide", timescale: vScale, entry: avc1Entry(cfg), perChunk: int(flags%4) + 1, elstV1: flags&0x10 != 0, noStss: flags&0x20 != 0}
	n := int(next() % 48)
	for i := range n {
		d, c, k := next(), next(), next()
		delta := uint32(d) * vScale / 30
		switch d {
		case 255:
			delta = 0xffffffff
		case 254:
			delta = 600 * vScale
		}
		nal := []byte{0x41, byte(i), byte(i >> 8)}
		if k&1 != 0 {
			nal[0] = 0x65
		}
		var payload []byte
		switch lengthSize {
		case 4:
			payload = binary.BigEndian.AppendUint32(nil, uint32(len(nal)))
		case 2:
			payload = binary.BigEndian.AppendUint16(nil, uint16(len(nal)))
		case 1:
			payload = []byte{byte(len(nal))}
		}
		v.samples = append(v.samples, testSample{delta: delta, cto: int32(int8(c)) * int32(vScale) / 30, sync: k&1 != 0, data: append(payload, nal...)})
	}
	for range int(next() % 4) {
		mt := int64(int8(next())) * int64(vScale) / 10
		if next()&1 == 0 {
			mt = -1
		}
		v.edits = append(v.edits, mp4Edit{duration: uint64(next()) * uint64(movieScale) / 10, mediaTime: mt, rate: 1 << 16})
	}
	tracks := []testTrack{v}
	if flags&0x40 != 0 {
		a := testTrack{handler: "soun", timescale: 48000, entry: mp4aEntry(asc)}
		for i := range n {
			a.samples = append(a.samples, testSample{delta: 1024, sync: true, data: []byte{0x21, byte(i), 0x42}})
		}
		if flags&0x80 != 0 {
			a.edits = []mp4Edit{{duration: 0, mediaTime: 1024, rate: 1 << 16}}
		}
		tracks = append(tracks, a)
	}
	return buildMP4(movieScale, tracks, flags&0x08 != 0), n
}

func FuzzMP4Timestamps(f *testing.F) {
	_, params := fixtureAUs(f, 1)
	avcC, err := params.CodecPrivate()
	if err != nil {
		f.Fatal(err)
	}
	asc := []byte{0x11, 0x88} // AAC LC, 48 kHz, mono
	f.Add([]byte{0, 0, 0, 0x48, 10, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0}, []byte{})
	f.Add([]byte{1, 1, 1, 0xd9, 8, 1, 2, 1, 1, 0, 0, 254, 1, 0, 1, 0, 0, 255, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 20, 1, 5, 1, 30}, []byte{})
	f.Add([]byte{2, 2, 2, 0x7f, 6, 1, 5, 1, 1, 250, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 2, 0, 1, 0, 1, 0}, []byte{10, 0, 20})
	f.Fuzz(func(t *testing.T, data []byte, corrupt []byte) {
		file, n := fuzzMP4(t, avcC, asc, data)
		// Then some bytes of the file changed, where corrupt says.
		for i := 0; i+1 < len(corrupt) && len(file) > 0; i += 2 {
			file[(int(corrupt[i])*131+int(corrupt[i+1]))%len(file)] = corrupt[i+1]
		}
		clock := newFakeClock()
		m := &MP4{R: bytes.NewReader(file), Pace: true, Now: clock.now, sleep: clock.sleep}
		var got collect
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := m.Run(ctx, &got)
		if ctx.Err() != nil {
			t.Fatal("the source hung")
		}
		if err != nil || len(corrupt) > 0 {
			return
		}
		// Video frames in decoding order: their sample numbers only grow
		// within an edit.
		segs := 0
		for _, e := range parseEditsOf(file) {
			if e.mediaTime >= 0 && e.rate != 0 {
				segs++
			}
		}
		last := -1
		for _, fr := range got.frames {
			if fr.Track != 1 {
				continue
			}
			idx := int(fr.Data[len(fr.Data)-2]) | int(fr.Data[len(fr.Data)-1])<<8
			if idx <= last && segs <= 1 {
				t.Fatalf("sample %d after %d", idx, last)
			}
			last = idx
			if idx >= n {
				t.Fatalf("sample %d of %d", idx, n)
			}
		}
		for _, fr := range got.frames {
			if fr.Track == 1 {
				if !fr.Key {
					t.Fatal("the video does not start with a key frame")
				}
				break
			}
		}
	})
}

// parseEditsOf returns the video track's edit list of a built file.
func parseEditsOf(file []byte) []mp4Edit {
	top, err := readMP4Top(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		return nil
	}
	m, err := parseMoov(top.moov)
	if err != nil || len(m.tracks) == 0 {
		return nil
	}
	return m.tracks[0].edits
}

// FuzzMP4Reader: through whatever edit list and sample table, the track
// reader accounts for every sample: handed on, hidden by the edit list,
// or reported lost, once per edit.
func FuzzMP4Reader(f *testing.F) {
	_, params := fixtureAUs(f, 1)
	avcC, _ := params.CodecPrivate()
	f.Add([]byte{0, 0, 0, 0x48, 10, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 3, 10, 0, 30, 1, 0, 40})
	f.Add([]byte{1, 1, 1, 0xd9, 8, 1, 2, 1, 1, 0, 0, 254, 1, 0, 1, 0, 0, 255, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 20, 1, 5, 1, 30})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, n := fuzzMP4(t, avcC, nil, data)
		top, err := readMP4Top(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseMoov(top.moov)
		if err != nil {
			t.Fatal(err)
		}
		tr := m.tracks[0]
		if err := tr.table.check(int64(len(file))); err != nil {
			t.Fatal(err)
		}
		segs, _ := mp4Segments(tr, m.timescale)
		r := newMP4Reader(1, true, tr, segs)
		sent := 0
		for {
			o, ok, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if o.offset < 0 || o.offset+int64(o.size) > int64(len(file)) {
				t.Fatalf("a sample at %d+%d in a file of %d", o.offset, o.size, len(file))
			}
			sent++
		}
		// A segment that is not the last ends at its first key frame past
		// its end: the samples after it are not its to count.
		if len(segs) == 1 && sent+r.hidden+r.lost != n {
			t.Fatalf("%d samples: %d handed on, %d hidden, %d lost", n, sent, r.hidden, r.lost)
		}
	})
}

func FuzzAnnexBTiming(f *testing.F) {
	f.Add([]byte{10, 10, 10, 10, 255, 10, 10}, byte(0))
	f.Add([]byte{10, 10, 0, 10, 128, 10, 10, 127}, byte(1))
	f.Add([]byte{33, 33, 33, 200, 33, 33, 1, 33}, byte(2))
	aus, _ := fixtureAUs(f, 30)
	var stream []byte
	for _, au := range aus {
		stream = codec.AppendAnnexB(stream, au)
	}
	f.Fuzz(func(t *testing.T, ticks []byte, mode byte) {
		clock := newFakeClock()
		// The clock moves by the fuzz's steps, between reads: forwards,
		// backwards (an NTP step), by an hour either way.
		r := &tickingReader{r: bytes.NewReader(stream), clock: clock, ticks: ticks}
		a := &AnnexB{R: r, Codec: codec.H264, Now: clock.now, sleep: clock.sleep}
		switch mode % 3 {
		case 0:
			a.Arrival = true
		case 1:
			a.FPS, a.Pace = 25, true
		case 2:
			a.Pace = true // the SPS's rate
		}
		var got collect
		if err := a.Run(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		// The last access unit waits for a start code that never comes...
		// until the end of the input: every one arrives.
		if len(got.frames)+got.drops[1] != len(aus) || !got.frames[0].Key {
			t.Fatalf("%d frames and %d reported lost of %d", len(got.frames), got.drops[1], len(aus))
		}
		for i := 1; i < len(got.frames); i++ {
			if got.frames[i].DTS <= got.frames[i-1].DTS {
				t.Fatalf("frame %d at %v after %v", i, got.frames[i].DTS, got.frames[i-1].DTS)
			}
		}
		if clock.longest() > startDiscontinuity {
			t.Fatalf("slept %v at once", clock.longest())
		}
	})
}

// tickingReader moves a fake clock on at each read.
type tickingReader struct {
	r     io.Reader
	clock *fakeClock
	ticks []byte
	i     int
}

func (t *tickingReader) Read(p []byte) (int, error) {
	if len(t.ticks) > 0 {
		b := t.ticks[t.i%len(t.ticks)]
		t.i++
		switch b {
		case 255:
			t.clock.t = t.clock.t.Add(time.Hour)
		case 128:
			t.clock.t = t.clock.t.Add(-time.Hour)
		default:
			t.clock.t = t.clock.t.Add(time.Duration(int8(b)) * time.Millisecond)
		}
	}
	// Small reads, so that the clock moves between access units.
	n, err := t.r.Read(p[:min(len(p), 512)])
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

// midGOP is a stream that starts in the middle of a GOP, at access unit
// from, whose parameter sets come with that first picture (as encoders
// that repeat them do): the pictures up to the next key frame are reported
// lost, the rest handed on.
func midGOP(t *testing.T, aus [][][]byte, from int) [][][]byte {
	t.Helper()
	var sets [][]byte
	for _, n := range aus[0] {
		if typ := codec.H264.NALUType(n); typ == 7 || typ == 8 {
			sets = append(sets, n)
		}
	}
	out := [][][]byte{append(append([][]byte{}, sets...), aus[from]...)}
	return append(out, aus[from+1:]...)
}

func TestStartInTheMiddleOfAGOP(t *testing.T) {
	aus, _ := fixtureAUs(t, 30) // key frames at 0 and 25
	stream := midGOP(t, aus, 5)
	var annexb []byte
	for _, au := range stream {
		annexb = codec.AppendAnnexB(annexb, au)
	}
	var ts bytes.Buffer
	video := &mpegts.Track{Codec: &tscodecs.H264{}}
	w := &mpegts.Writer{W: &ts, Tracks: []*mpegts.Track{video}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i, au := range stream {
		if err := w.WriteH264(video, int64(i*3000), int64(i*3000), au); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range map[string]Source{
		"Annex-B": &AnnexB{R: bytes.NewReader(annexb), Codec: codec.H264},
		"MPEG-TS": &MPEGTS{R: bytes.NewReader(ts.Bytes())},
	} {
		var got collect
		if err := src.Run(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		if got.count(1) != 5 || got.drops[1] != 20 || !bytes.Equal(got.frames[0].Data, codec.H264.AppendLengthPrefixed(nil, aus[25])) {
			t.Fatalf("%s: %d frames handed on, %d reported lost; want 5 from the key frame on, and 20", name, got.count(1), got.drops[1])
		}
	}
}
