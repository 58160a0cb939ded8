package playback

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/mkv"
)

// source is a clip encoded by ffmpeg, and its frames as Matroska stores
// them (decoding order, presentation timestamps).
type source struct {
	path   string
	header mkv.Header
	frames []srcFrame
}

type srcFrame struct {
	track uint64
	pts   time.Duration
	key   bool
	data  []byte
}

// Encoder settings the remuxer must handle.
var (
	x264BPyramid = []string{"-c:v", "libx264", "-threads", "1", "-pix_fmt", "yuv420p", "-profile:v", "high", "-g", "25",
		"-keyint_min", "25", "-sc_threshold", "0", "-bf", "3", "-x264-params", "b-pyramid=normal", "-b:v", "400k"}
	x264OpenGOP = []string{"-c:v", "libx264", "-threads", "1", "-pix_fmt", "yuv420p", "-profile:v", "high", "-g", "25",
		"-keyint_min", "25", "-sc_threshold", "0", "-bf", "3", "-x264-params", "b-pyramid=normal:open-gop=1", "-b:v", "400k"}
	// x265's defaults: open GOP (CRA key frames with RASL leading
	// pictures), B-frame hierarchy.
	x265Default = []string{"-c:v", "libx265", "-pix_fmt", "yuv420p", "-b:v", "400k",
		"-x265-params", "keyint=25:min-keyint=25:frame-threads=1:pools=none:log-level=error"}
	x264Baseline = []string{"-c:v", "libx264", "-threads", "1", "-pix_fmt", "yuv420p", "-profile:v", "baseline", "-g", "30",
		"-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-b:v", "300k"}
	withAAC = []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac", "-b:a", "64k", "-ac", "1"}
)

// encode makes a 3 s clip (320x240, 30 fps) with ffmpeg into Matroska and
// reads its frames back.
func encode(t testing.TB, video []string, audio bool) *source {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.mkv")
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"}
	if audio {
		args = append(args, withAAC[:4]...)
	}
	args = append(args, "-t", "3", "-map", "0:v")
	if audio {
		args = append(args, "-map", "1:a")
	}
	args = append(args, video...)
	if audio {
		args = append(args, withAAC[4:]...)
	}
	args = append(args, "-fflags", "+bitexact", "-f", "matroska", path)
	mediatest.Run(t, nil, "ffmpeg", args...)
	return readSource(t, path)
}

func readSource(t testing.TB, path string) *source {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &source{path: path}
	d := mkv.NewDemuxer(bytes.NewReader(b))
	var scale int64 = mkv.DefaultTimecodeScale
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
			s.header = *ev.Header
			s.header.Tracks = slices.Clone(ev.Header.Tracks)
			if ev.Header.TimecodeScale != 0 {
				scale = int64(ev.Header.TimecodeScale)
			}
		case mkv.EventBlock:
			for _, fr := range ev.Block.Frames {
				s.frames = append(s.frames, srcFrame{track: ev.Block.Track, pts: time.Duration(ev.Timecode * scale),
					key: ev.Key, data: slices.Clone(fr)})
			}
		}
	}
	return s
}

// kvsFragments cuts a source into KVS fragments the way the producer does:
// a Cluster at every video key frame, its timecode the smallest
// presentation time of the key frame and its leading pictures (so the key
// frame's own block may have a positive relative timecode), audio in the
// Cluster its time falls into. It returns the stream header (as the store
// keeps it) and each fragment's body.
func kvsFragments(t testing.TB, s *source, at time.Time) (header []byte, bodies [][]byte) {
	t.Helper()
	h := s.header
	h.TimecodeScale = mkv.DefaultTimecodeScale
	header, err := mkv.AppendHeader(nil, &h)
	if err != nil {
		t.Fatal(err)
	}
	video := h.Tracks[0].Number
	offset := time.Duration(at.UnixMilli()) * time.Millisecond
	// Cluster starts: for each video key frame, the smallest PTS of it and
	// the frames after it in decoding order until one is presented later.
	var starts []time.Duration
	var vframes []srcFrame
	for _, f := range s.frames {
		if f.track == video {
			vframes = append(vframes, f)
		}
	}
	for i, f := range vframes {
		if !f.key {
			continue
		}
		start := f.pts
		for _, g := range vframes[i+1:] {
			if g.key {
				break
			}
			start = min(start, g.pts)
		}
		starts = append(starts, start)
	}
	// Audio that starts before the first video frame (an encoder's
	// priming frame) opens the first Cluster.
	for _, f := range s.frames {
		if f.track != video && f.pts < starts[0] {
			starts[0] = f.pts
		}
	}
	// Assign frames: video by GOP (decoding order), audio by time.
	bodies = make([][]byte, len(starts))
	cluster := -1
	type block struct{ f srcFrame }
	perCluster := make([][]block, len(starts))
	for _, f := range s.frames {
		if f.track == video {
			if f.key {
				cluster++
			}
			if cluster < 0 {
				t.Fatal("source does not start with a key frame")
			}
			perCluster[cluster] = append(perCluster[cluster], block{f: f})
			continue
		}
		c := 0
		for i, st := range starts {
			if f.pts >= st {
				c = i
			}
		}
		perCluster[c] = append(perCluster[c], block{f: f})
	}
	for i, blocks := range perCluster {
		tc := (starts[i] + offset) / time.Millisecond
		b := mkv.AppendClusterStart(nil, uint64(tc))
		// Video in decoding order, audio merged in by time.
		var vs, as []block
		for _, bl := range blocks {
			if bl.f.track == video {
				vs = append(vs, bl)
			} else {
				as = append(as, bl)
			}
		}
		blocks = blocks[:0]
		for len(vs) > 0 || len(as) > 0 {
			if len(as) > 0 && (len(vs) == 0 || as[0].f.pts < vs[0].f.pts) {
				blocks, as = append(blocks, as[0]), as[1:]
			} else {
				blocks, vs = append(blocks, vs[0]), vs[1:]
			}
		}
		for _, bl := range blocks {
			rel := (bl.f.pts+offset)/time.Millisecond - tc
			var flags byte
			if bl.f.key {
				flags = mkv.FlagKey
			}
			b = mkv.AppendSimpleBlockHeader(b, bl.f.track, int16(rel), flags, len(bl.f.data))
			b = append(b, bl.f.data...)
		}
		bodies[i] = b
	}
	return header, bodies
}
