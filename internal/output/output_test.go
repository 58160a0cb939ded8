package output_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/output"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

var (
	sps  = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00}
	pps  = []byte{0x68, 0xce, 0x3c, 0x80}
	avcc = append(append(append([]byte{1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, byte(len(sps))}, sps...), 1, 0, byte(len(pps))), pps...)
)

func fragment(number string, tc time.Duration, tracks []media.Track) *kvs.FragmentInfo {
	return &kvs.FragmentInfo{Number: number, Timecode: tc, TimecodeScale: time.Millisecond, Tracks: tracks}
}

func frame(f *kvs.FragmentInfo, track uint8, pts time.Duration, key bool, nalus ...[]byte) *kvs.Frame {
	var data []byte
	for _, n := range nalus {
		data = append(data, 0, 0, 0, byte(len(n)))
		data = append(data, n...)
	}
	return &kvs.Frame{Frame: media.Frame{Track: track, PTS: pts, DTS: pts, Key: key, Data: data}, Fragment: f}
}

var tracks = []media.Track{
	{Number: 1, Kind: media.KindVideo, CodecID: media.CodecH264, CodecPrivate: avcc, Width: 64, Height: 48},
	{Number: 2, Kind: media.KindAudio, CodecID: media.CodecAAC, CodecPrivate: []byte{0x12, 0x10}, SampleRate: 48000, Channels: 2},
}

// TestAnnexB: start codes, an AUD per picture, the parameter sets before
// each key frame, no audio, nothing before the first key frame, and the
// source's own AUDs not doubled.
func TestAnnexB(t *testing.T) {
	var b bytes.Buffer
	w := output.NewAnnexB(&b)
	f1 := fragment("1", time.Second, tracks)
	idr, p, aud := []byte{0x65, 0x88, 0x84}, []byte{0x41, 0x9a, 0x02}, []byte{0x09, 0x10}
	for _, fr := range []*kvs.Frame{
		frame(f1, 1, time.Second-33*time.Millisecond, false, p), // before any key frame: dropped
		frame(f1, 1, time.Second, true, aud, idr),
		frame(f1, 2, time.Second, true, []byte{0x21, 0x10}), // audio: dropped
		frame(f1, 1, time.Second+33*time.Millisecond, false, p),
	} {
		if err := w.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	sc := string([]byte{0, 0, 0, 1})
	want := sc + "\x09\xf0" + sc + string(sps) + sc + string(pps) + sc + string(idr) + sc + "\x09\xf0" + sc + string(p)
	if b.String() != want {
		t.Fatalf("got  % x\nwant % x", b.Bytes(), []byte(want))
	}

	hevc := []media.Track{{Number: 1, Kind: media.KindVideo, CodecID: "V_MPEG4/ISO/ASP"}}
	err := output.NewAnnexB(io.Discard).WriteFrame(frame(fragment("2", 0, hevc), 1, 0, true, idr))
	if !errors.Is(err, output.ErrNotH26x) || !strings.Contains(err.Error(), "--format mkv") {
		t.Fatalf("MPEG-4 part 2: %v", err)
	}
}

// TestMatroska: one header while the tracks stay, a Cluster per fragment
// at the fragment's timecode, frames at their own times (also before the
// cluster's, as open-GOP leading pictures are), audio kept; ffprobe reads
// it.
func TestMatroska(t *testing.T) {
	var b bytes.Buffer
	w := output.NewMatroska(&b)
	f1 := fragment("1", 10*time.Second, tracks)
	f2 := fragment("2", 11*time.Second, tracks)
	in := []*kvs.Frame{
		frame(f1, 1, 10*time.Second, true, []byte{0x65, 1}),
		frame(f1, 2, 10*time.Second+5*time.Millisecond, true, []byte{0x21, 1}),
		frame(f1, 1, 10*time.Second+33*time.Millisecond, false, []byte{0x41, 2}),
		frame(f2, 1, 11*time.Second+66*time.Millisecond, true, []byte{0x65, 3}),
		frame(f2, 1, 11*time.Second-33*time.Millisecond, false, []byte{0x41, 4}), // a leading picture
	}
	for _, fr := range in {
		if err := w.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	d := mkv.NewDemuxer(bytes.NewReader(b.Bytes()))
	var headers, clusters int
	var got []string
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			headers++
			if len(ev.Header.Tracks) != 2 || ev.Header.Tracks[1].SamplingFrequency != 48000 || !bytes.Equal(ev.Header.Tracks[0].CodecPrivate, avcc) {
				t.Fatalf("header %+v", ev.Header)
			}
		case mkv.EventCluster:
			clusters++
		case mkv.EventBlock:
			got = append(got, string(rune('0'+ev.Block.Track))+":"+time.Duration(ev.Timecode*int64(time.Millisecond)).String())
		}
	}
	want := []string{"1:10s", "2:10.005s", "1:10.033s", "1:11.066s", "1:10.967s"}
	if headers != 1 || clusters != 2 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%d headers, %d clusters, frames %v; want 1, 2, %v", headers, clusters, got, want)
	}
	streams := mediatest.Probe(t, "-", b.Bytes(), "matroska")
	if len(streams) != 2 || streams[0].CodecName != "h264" || streams[1].CodecName != "aac" {
		t.Fatalf("ffprobe: %+v", streams)
	}

	// New tracks (another connection's header): a new Segment.
	other := append([]media.Track(nil), tracks[0])
	other[0].Width = 128
	if err := w.WriteFrame(frame(fragment("3", 12*time.Second, other), 1, 12*time.Second, true, []byte{0x65, 5})); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b.Bytes(), []byte{0x1a, 0x45, 0xdf, 0xa3}); n != 2 {
		t.Fatalf("%d EBML headers after a track change, want 2", n)
	}
}

func TestNew(t *testing.T) {
	for _, f := range []string{"mkv", "annexb", "MKV"} {
		if _, err := output.New(f, io.Discard); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := output.New("avi", io.Discard); err == nil || !strings.Contains(err.Error(), "mkv, annexb") {
		t.Errorf("avi: %v", err)
	}
}
