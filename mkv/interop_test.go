package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// epoch is where the tests put the first frame: ABSOLUTE timecodes, as kvsgo
// sends them.
const epoch = 1704067200000 * time.Millisecond

// TestWriterReproducesKVSSink: the frames of kvssink's recorded PutMedia
// body, written again by the Writer, give kvssink's bytes exactly.
func TestWriterReproducesKVSSink(t *testing.T) {
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var w *Writer
	d := NewDemuxer(bytes.NewReader(body))
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		switch ev.Type {
		case EventHeader:
			w, err = NewWriter(&out, *ev.Header)
			must(t, err)
		case EventBlock:
			pts := time.Duration(ev.Timecode) * time.Millisecond
			must(t, w.WriteFrame(ev.Block.Track, pts, ev.Key, ev.Block.Frames[0]))
		}
	}
	must(t, w.EndFragment())
	if !bytes.Equal(out.Bytes(), body) {
		n := 0
		for n < min(out.Len(), len(body)) && out.Bytes()[n] == body[n] {
			n++
		}
		t.Fatalf("output (%d bytes) differs from kvssink's (%d bytes) at offset %d", out.Len(), len(body), n)
	}
}

type rawFixture struct {
	name    string
	codec   codec.Codec
	ffcodec string // ffprobe's codec_name and ffmpeg's raw format
	format  string
}

var rawFixtures = []rawFixture{
	{"h264-baseline.h264", codec.H264, "h264", "h264"},
	{"h264-high-bframes.h264", codec.H264, "h264", "h264"},
	{"h265.h265", codec.H265, "hevc", "hevc"},
}

// muxRaw turns a raw Annex-B fixture into KVS Matroska the way the producer
// will: access units, parameter sets, POC-derived timestamps, one cluster
// per key frame.
func muxRaw(t *testing.T, f rawFixture) (path string, frames int) {
	t.Helper()
	const frame = time.Second / 30
	ar := codec.NewAnnexBReader(bytes.NewReader(mediatest.ReadFixture(t, f.name)), f.codec)
	params := &codec.Params{Codec: f.codec}
	deriver := &codec.PTSDeriver{Codec: f.codec}
	var out bytes.Buffer
	var w *Writer
	var buf []byte
	for i := 0; ; i++ {
		au, err := ar.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		_, err = params.Update(au)
		must(t, err)
		if w == nil {
			cpd, err := params.CodecPrivate()
			must(t, err)
			info := params.Info()
			id := "V_MPEG4/ISO/AVC"
			if f.codec == codec.H265 {
				id = "V_MPEGH/ISO/HEVC"
			}
			w, err = NewWriter(&out, Header{Tracks: []Track{{Number: 1, UID: 1, Type: TrackTypeVideo, Name: "kinesis_video",
				CodecID: id, CodecPrivate: cpd, Width: uint16(info.Width), Height: uint16(info.Height)}}})
			must(t, err)
		}
		dts := time.Duration(i) * frame
		pts, err := deriver.PTS(au, dts, frame, params)
		must(t, err)
		buf = f.codec.AppendLengthPrefixed(buf[:0], au)
		must(t, w.WriteFrame(1, epoch+pts, f.codec.IsKey(au), buf))
		frames++
	}
	path = filepath.Join(t.TempDir(), strings.TrimSuffix(f.name, filepath.Ext(f.name))+".mkv")
	must(t, os.WriteFile(path, out.Bytes(), 0o644))
	return path, frames
}

// TestWriterOutputAcceptedByRealTools: ffprobe, mkvinfo and GStreamer's
// matroskademux read the Writer's output with the source's frame count, size
// and codec; ffmpeg decodes it to frames identical to the source's; the
// presentation times are the encoder's.
func TestWriterOutputAcceptedByRealTools(t *testing.T) {
	for _, f := range rawFixtures {
		t.Run(f.name, func(t *testing.T) {
			path, frames := muxRaw(t, f)
			src := mediatest.Probe(t, mediatest.Fixture(t, f.name), nil, "")[0]
			got := mediatest.Probe(t, path, nil, "")[0]
			if got.CodecName != f.ffcodec || got.Width != src.Width || got.Height != src.Height || got.Profile != src.Profile {
				t.Errorf("ffprobe: %s %s %dx%d, source %s %s %dx%d", got.CodecName, got.Profile, got.Width, got.Height, src.CodecName, src.Profile, src.Width, src.Height)
			}
			if got.NbReadFrames != src.NbReadFrames || got.NbReadFrames != strconv.Itoa(frames) {
				t.Errorf("ffprobe counts %s packets, source %s, written %d", got.NbReadFrames, src.NbReadFrames, frames)
			}

			info := string(mediatest.Run(t, nil, "mkvinfo", "-s", path))
			if n := strings.Count(info, " frame, track 1"); n != frames {
				t.Errorf("mkvinfo counts %d frames, want %d", n, frames)
			}

			gst := string(mediatest.Run(t, nil, "gst-launch-1.0", "-v", "filesrc", "location="+path, "!", "matroskademux", "!", "fakesink", "silent=false"))
			if n := strings.Count(gst, "chain   ******"); n != frames {
				t.Errorf("GStreamer matroskademux passed %d buffers, want %d", n, frames)
			}

			want := mediatest.FrameMD5(t, mediatest.Fixture(t, f.name), nil, f.format, "v:0")
			decoded := mediatest.FrameMD5(t, path, nil, "", "v:0")
			if len(want) != frames || !slices.Equal(decoded, want) {
				t.Errorf("decoded frames differ from the source's: %d vs %d frames", len(decoded), len(want))
			}

			if f.name != "h264-baseline.h264" {
				checkPTS(t, path, f.name+".pts")
			}
		})
	}
}

// checkPTS compares the packet times of a file with the encoder's.
func checkPTS(t *testing.T, path, golden string) {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts", "-of", "csv=p=0", path)
	got := strings.Fields(string(out))
	want := strings.Fields(string(mediatest.ReadFixture(t, golden)))
	if len(got) != len(want) {
		t.Fatalf("%d packets, encoder had %d", len(got), len(want))
	}
	base, _ := strconv.ParseInt(got[0], 10, 64)
	for i := range want {
		g, _ := strconv.ParseInt(got[i], 10, 64)
		w, _ := strconv.ParseInt(want[i], 10, 64)
		if d := g - base - w; d < -1 || d > 1 {
			t.Fatalf("packet %d at %d ms, encoder said %d ms", i, g-base, w)
		}
	}
}

// TestRemuxAudioVideo: H.264 + AAC Matroska from ffmpeg, read by the
// Demuxer and written again in KVS's layout, decodes to the same video and
// audio.
func TestRemuxAudioVideo(t *testing.T) {
	src := mediatest.Fixture(t, "h264-aac.mkv")
	data := mediatest.ReadFixture(t, "h264-aac.mkv")
	type frame struct {
		track uint64
		tc    int64
		key   bool
		data  []byte
	}
	var frames []frame
	var header *Header
	d := NewDemuxer(bytes.NewReader(data))
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		switch ev.Type {
		case EventHeader:
			header = ev.Header
		case EventBlock:
			for _, fr := range ev.Block.Frames {
				frames = append(frames, frame{ev.Block.Track, ev.Timecode, ev.Key, append([]byte(nil), fr...)})
			}
		}
	}
	if header == nil || len(header.Tracks) != 2 {
		t.Fatalf("header %+v", header)
	}
	// Interleave by time, video first at equal times, so that every audio
	// frame falls inside the cluster of the video key frame before it.
	slices.SortStableFunc(frames, func(a, b frame) int {
		if a.tc != b.tc {
			return int(a.tc - b.tc)
		}
		return int(a.track) - int(b.track)
	})
	var out bytes.Buffer
	w, err := NewWriter(&out, *header)
	must(t, err)
	scale := time.Duration(header.timecodeScale())
	dropped := 0
	for _, f := range frames {
		err := w.WriteFrame(f.track, epoch+time.Duration(f.tc)*scale, f.key, f.data)
		if errors.Is(err, ErrNeedKeyFrame) && f.track == 2 {
			dropped++ // audio before the first video key frame has no fragment to go in
			continue
		}
		must(t, err)
	}
	if dropped > 2 {
		t.Fatalf("%d audio frames before the first video frame", dropped)
	}
	path := filepath.Join(t.TempDir(), "av.mkv")
	must(t, os.WriteFile(path, out.Bytes(), 0o644))

	want := mediatest.FrameMD5(t, src, nil, "", "v:0")
	if got := mediatest.FrameMD5(t, path, nil, "", "v:0"); len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("video: %d decoded frames, source %d, or they differ", len(got), len(want))
	}
	want = mediatest.PacketMD5(t, src, nil, "", "a:0")
	if got := mediatest.PacketMD5(t, path, nil, "", "a:0"); len(want) == 0 || !slices.Equal(got, want[dropped:]) {
		t.Errorf("audio: %d packets, source %d less %d dropped, or they differ", len(got), len(want), dropped)
	}
	streams := mediatest.Probe(t, path, nil, "")
	if len(streams) != 2 || streams[1].CodecName != "aac" || streams[1].SampleRate != "48000" || streams[1].Channels != 1 {
		t.Errorf("ffprobe: %+v", streams)
	}
	mediatest.Run(t, nil, "gst-launch-1.0", "-q", "filesrc", "location="+path, "!", "matroskademux", "name=d",
		"d.video_0", "!", "queue", "!", "fakesink", "d.audio_0", "!", "queue", "!", "fakesink")
}
