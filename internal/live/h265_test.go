package live

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/pion/rtp/codecs"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/mkv"
)

// x265Stream encodes 3 s of H.265 with x265 (no B-frames, a key frame
// every 30 frames: IDR first, CRA after, as x265's open GOP makes them)
// and returns its hvcC and its access units.
func x265Stream(t *testing.T) (hvcc []byte, aus [][][]byte) {
	t.Helper()
	raw := mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "3",
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
		aus = append(aus, cloneAU(au))
	}
	hvcc, err := params.CodecPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return hvcc, aus
}

func cloneAU(au [][]byte) [][]byte {
	out := make([][]byte, len(au))
	for i, n := range au {
		out[i] = bytes.Clone(n)
	}
	return out
}

// splitAnnexB returns the NAL units of an Annex-B byte stream.
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for _, n := range bytes.Split(b, []byte{0, 0, 1}) {
		if n = bytes.TrimRight(n, "\x00"); len(n) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// withoutParamSets returns the access units without their in-band VPS,
// SPS and PPS, as producers that carry them in the hvcC only send them.
func withoutParamSets(aus [][][]byte) [][][]byte {
	out := make([][][]byte, len(aus))
	for i, au := range aus {
		for _, n := range au {
			if typ := codec.H265.NALUType(n); typ < 32 || typ > 34 {
				out[i] = append(out[i], n)
			}
		}
	}
	return out
}

// An H.265 stream goes out packetized by RFC 7798 (pion's payloader): a
// viewer that joins mid-GOP starts at the next key frame (x265's are
// CRAs after the first IDR), which comes after the parameter sets (VPS,
// SPS, PPS; from the hvcC when the frames do not carry them, once when
// they do), and pion's depacketizer gives back every NAL unit of every
// frame from there on, byte for byte.
func TestH265FramesArriveWhole(t *testing.T) {
	hvcc, aus := x265Stream(t)
	t.Run("parameter sets in the hvcC only", func(t *testing.T) { testH265Frames(t, hvcc, withoutParamSets(aus)) })
	t.Run("parameter sets in band too", func(t *testing.T) { testH265Frames(t, hvcc, aus) })
}

func testH265Frames(t *testing.T, hvcc []byte, aus [][][]byte) {
	cfg, err := codec.ParseHVCC(hvcc)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", false, 0)
	defer p.Close()
	p.Event(header("V_MPEGH/ISO/HEVC", hvcc))
	if c := h.Codec("cam"); c != codec.H265 {
		t.Fatalf("codec %v", c)
	}
	if !codec.H265.IsKey(aus[0]) {
		t.Fatal("x265's first access unit is not a key frame")
	}
	p.Event(h265Block(0, aus[0]))
	v, err := h.Subscribe("cam")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var want [][][]byte // the NAL units each received frame must have
	var got []*Frame
	keys := 0
	for i, au := range aus[1:] {
		key := codec.H265.IsKey(au)
		p.Event(h265Block(int64(i+1)*33, au))
		got = append(got, received(v)...)
		if key {
			keys++
		}
		if keys == 0 {
			continue
		}
		var nalus [][]byte
		if key && codec.H265.NALUType(au[0]) != 32 {
			// x265's key frames start with their VPS, SPS and PPS (the
			// same IDs): pion's payloader sends each once.
			nalus = append(nalus, cfg.NALUs()...)
		}
		for _, n := range au {
			if typ := codec.H265.NALUType(n); typ != 35 && typ != 38 { // AUD and filler are not sent
				nalus = append(nalus, n)
			}
		}
		want = append(want, nalus)
	}
	if keys < 2 || len(want) < 30 {
		t.Fatalf("x265 made %d key frames after the first; %d frames to compare", keys, len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("the viewer got %d frames, want %d (from the first key frame after it joined)", len(got), len(want))
	}
	var d codecs.H265Depacketizer
	for i, f := range got {
		if i == 0 && !f.Key {
			t.Fatal("the viewer's first frame is not a key frame")
		}
		var annexB []byte
		for j, pk := range f.Packets {
			if len(pk.Payload) > MTU {
				t.Fatalf("frame %d: a packet of %d bytes", i, len(pk.Payload))
			}
			if pk.Marker != (j == len(f.Packets)-1) || pk.Timestamp != f.Packets[0].Timestamp {
				t.Fatalf("frame %d packet %d: marker %v, timestamp %d", i, j, pk.Marker, pk.Timestamp)
			}
			b, err := d.Unmarshal(pk.Payload)
			if err != nil {
				t.Fatalf("frame %d packet %d: %v", i, j, err)
			}
			annexB = append(annexB, b...)
		}
		nalus := splitAnnexB(annexB)
		if len(nalus) != len(want[i]) {
			t.Fatalf("frame %d has %d NAL units (types %v), want %d (types %v)", i, len(nalus), types(nalus), len(want[i]), types(want[i]))
		}
		for j := range nalus {
			if !bytes.Equal(nalus[j], want[i][j]) {
				t.Fatalf("frame %d NAL unit %d (type %d, %d bytes) differs from the source's (type %d, %d bytes)", i, j,
					codec.H265.NALUType(nalus[j]), len(nalus[j]), codec.H265.NALUType(want[i][j]), len(want[i][j]))
			}
		}
	}
	// x265's key frames after the first IDR are CRAs: the viewer started
	// at one.
	if typ := codec.H265.NALUType(want[0][len(want[0])-1]); typ != 21 {
		t.Fatalf("the first key frame after joining is NAL unit type %d, not a CRA (21)", typ)
	}
}

func types(nalus [][]byte) []uint8 {
	out := make([]uint8, len(nalus))
	for i, n := range nalus {
		out[i] = codec.H265.NALUType(n)
	}
	return out
}

// H.265 with B-frames is refused as H.264 with B-frames is.
func TestH265BFramesRefused(t *testing.T) {
	hvcc, aus := x265Stream(t)
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", false, 0)
	defer p.Close()
	p.Event(header("V_MPEGH/ISO/HEVC", hvcc))
	v, err := h.Subscribe("cam")
	if err != nil {
		t.Fatal(err)
	}
	p.Event(h265Block(0, aus[0]))
	p.Event(h265Block(100, aus[1]))
	p.Event(h265Block(33, aus[2])) // shown before the one sent before it
	select {
	case <-v.Done():
	default:
		t.Fatal("an H.265 B-frame did not end the viewer")
	}
	if !errors.Is(v.Err(), ErrReordered) || !errors.Is(h.Status("cam"), ErrReordered) {
		t.Fatalf("B-frames: viewer %v, status %v", v.Err(), h.Status("cam"))
	}
}

// A producer's next session switching between H.264 and H.265 ends the
// viewers, whose sessions negotiated the old codec.
func TestCodecSwitchEndsViewers(t *testing.T) {
	hvcc, _ := x265Stream(t)
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", false, 0)
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	v, err := h.Subscribe("cam")
	if err != nil {
		t.Fatal(err)
	}
	if v.Codec() != codec.H264 {
		t.Fatalf("viewer codec %v", v.Codec())
	}
	p.Close()
	p = h.Publish("cam", false, 0)
	defer p.Close()
	p.Event(header("V_MPEGH/ISO/HEVC", hvcc))
	select {
	case <-v.Done():
	default:
		t.Fatal("switching to H.265 did not end the H.264 viewer")
	}
	if !errors.Is(v.Err(), ErrCodecChanged) {
		t.Fatalf("after the switch: %v", v.Err())
	}
	if h.Codec("cam") != codec.H265 {
		t.Fatalf("codec %v", h.Codec("cam"))
	}
}

func h265Block(tc int64, au [][]byte) *mkv.Event {
	return &mkv.Event{Type: mkv.EventBlock, Timecode: tc, Key: codec.H265.IsKey(au),
		Block: mkv.Block{Track: 1, Frames: [][]byte{codec.H265.AppendLengthPrefixed(nil, au)}}}
}

// x265's parameter sets for 320x240 Main.
var (
	h265VPS = unhex("40010c01ffff01600000030090000003000003003c928090")
	h265SPS = unhex("42010101600000030090000003000003003ca00a080f16592a4932bc05a020000003002000000303c1")
	h265PPS = unhex("4401c172b46240")
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// hvcCOf returns the hvcC of x265's parameter sets above.
func hvcCOf(t testing.TB) []byte {
	t.Helper()
	params := codec.Params{Codec: codec.H265}
	if _, err := params.Update([][]byte{h265VPS, h265SPS, h265PPS}); err != nil {
		t.Fatal(err)
	}
	b, err := params.CodecPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// h265IDR is a frame of one IDR slice NAL unit of size bytes, 4-byte
// length-prefixed.
func h265IDR(size int) []byte {
	nalu := bytes.Repeat([]byte{0xab}, size)
	nalu[0], nalu[1], nalu[2] = 19<<1, 0x01, 0x80
	return append(binary.BigEndian.AppendUint32(nil, uint32(size)), nalu...)
}
