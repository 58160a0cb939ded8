package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/whep"
	"github.com/kvsgo/kvsgo/mkv"
)

// x265Clip encodes 6 s of H.265 with x265 (no B-frames, a key frame every
// 30 frames) and returns its hvcC and its access units without their
// in-band parameter sets (so the ones a viewer gets come from the hvcC).
func x265Clip(t *testing.T) (hvcc []byte, aus [][][]byte) {
	t.Helper()
	raw := mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "6",
		"-c:v", "libx265", "-x265-params", "bframes=0:keyint=30:min-keyint=30:scenecut=0:log-level=error", "-pix_fmt", "yuv420p", "-f", "hevc", "-")
	r := codec.NewAnnexBReader(bytes.NewReader(raw), codec.H265)
	params := codec.Params{Codec: codec.H265}
	for {
		au, err := r.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := params.Update(au); err != nil {
			t.Fatal(err)
		}
		var frame [][]byte
		for _, n := range au {
			if typ := codec.H265.NALUType(n); typ < 32 || typ > 34 {
				frame = append(frame, bytes.Clone(n))
			}
		}
		aus = append(aus, frame)
	}
	hvcc, err := params.CodecPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return hvcc, aus
}

// h265Producer streams the access units into PutMedia at 30 fps, in real
// time; done is closed when all are sent and the session has ended.
func h265Producer(t *testing.T, ts *testServer, stream string, hvcc []byte, aus [][][]byte) (done <-chan struct{}) {
	t.Helper()
	pr, pw := io.Pipe()
	w, err := mkv.NewWriter(pw, mkv.Header{Tracks: []mkv.Track{{Number: 1, Type: mkv.TrackTypeVideo, CodecID: "V_MPEGH/ISO/HEVC", CodecPrivate: hvcc, Width: 320, Height: 240}}})
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, _ = putMedia(t, ts.URL, stream, pr, "RELATIVE")
	}()
	wrote := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		defer pw.Close()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i, au := range aus {
			if err := w.WriteFrame(1, time.Duration(i)*time.Second/30, codec.H265.IsKey(au), codec.H265.AppendLengthPrefixed(nil, au)); err != nil {
				return
			}
			if i == 0 {
				close(wrote)
			}
			<-tick.C // the producer's pace: a frame every 1/30 s
		}
	}()
	<-wrote
	all := make(chan struct{})
	go func() { <-sent; <-finished; close(all) }()
	t.Cleanup(func() { <-all })
	return all
}

// TestWHEPPlaysH265: a viewer (pion) that offers H.265 gets an H.265 PutMedia
// stream over WebRTC: the answer sends video/H265; from the first key
// frame after it joined, every frame arrives, and pion's depacketizer
// gives back the source's NAL units byte for byte, the key frames after
// the VPS, SPS and PPS of the stream's hvcC.
func TestWHEPPlaysH265(t *testing.T) {
	hvcc, aus := x265Clip(t)
	cfg, err := codec.ParseHVCC(hvcc)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t)
	ts.createStream(t, "cam265", 1)
	done := h265Producer(t, ts, "cam265", hvcc, aus)

	c, err := dial(t, ts, "cam265", nil, sigv4, whep.WithH265(), whep.WithAccessUnits())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	select {
	case <-c.Connected():
	case <-time.After(20 * time.Second):
		t.Fatal("not connected in 20 s")
	}
	<-done
	// The last frames may still be on their way over loopback: wait until
	// the count stops short of none, at most 10 s.
	var got [][]byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = c.AccessUnits()
		if n := len(got); n > 0 && received265(got[0], aus, cfg) >= 0 && received265(got[0], aus, cfg)+n == len(aus) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // between looks at a condition with a deadline
	}
	st := c.Stats()
	if st.MimeType != "video/H265" || st.Lost != 0 {
		t.Fatalf("negotiated %q, %d packets lost", st.MimeType, st.Lost)
	}
	if len(got) == 0 {
		t.Fatal("no frame received")
	}
	first := received265(got[0], aus, cfg)
	if first < 0 {
		t.Fatalf("the first frame received (NAL unit types %v) is no source key frame after the parameter sets", nalTypes(splitAnnexB(got[0])))
	}
	if len(got) < 60 || first+len(got) != len(aus) {
		t.Fatalf("received %d frames from source frame %d on; the source has %d", len(got), first, len(aus))
	}
	for i, au := range got {
		want := aus[first+i]
		if codec.H265.IsKey(want) {
			want = append(cfg.NALUs(), want...)
		}
		if nalus := splitAnnexB(au); !equalNALUs(nalus, want) {
			t.Fatalf("frame %d (source frame %d): NAL unit types %v, want %v, or their bytes differ", i, first+i, nalTypes(nalus), nalTypes(want))
		}
	}
	t.Logf("received source frames %d to %d, %d packets", first, len(aus)-1, st.Packets)
}

// TestWHEPRefusesH265ToH264Browsers: a viewer that offers H.264 only is
// refused an H.265 stream with 409 and the reason, on which the page plays
// it over HLS.
func TestWHEPRefusesH265ToH264Browsers(t *testing.T) {
	hvcc, aus := x265Clip(t)
	ts := startServer(t)
	ts.createStream(t, "cam265", 1)
	h265Producer(t, ts, "cam265", hvcc, aus[:60])
	_, err := dial(t, ts, "cam265", nil, sigv4)
	wantStatus(t, err, http.StatusConflict, "this browser does not offer H.265 over WebRTC; the page plays it over HLS")
}

// received265 returns the index of the source key frame an access unit is
// (after the parameter sets), or -1.
func received265(au []byte, aus [][][]byte, cfg codec.DecoderConfig) int {
	nalus := splitAnnexB(au)
	for i, src := range aus {
		if codec.H265.IsKey(src) && equalNALUs(nalus, append(cfg.NALUs(), src...)) {
			return i
		}
	}
	return -1
}

func equalNALUs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// splitAnnexB returns the NAL units of an Annex-B byte stream (a NAL unit
// never ends in a zero byte, nor holds a start code).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for _, n := range bytes.Split(b, []byte{0, 0, 1}) {
		if n = bytes.TrimRight(n, "\x00"); len(n) > 0 {
			out = append(out, n)
		}
	}
	return out
}

func nalTypes(nalus [][]byte) []uint8 {
	out := make([]uint8, len(nalus))
	for i, n := range nalus {
		out[i] = codec.H265.NALUType(n)
	}
	return out
}
