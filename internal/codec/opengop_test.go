package codec

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// ffprobeKeys returns ffprobe's key-frame flag of every packet of a raw
// stream: its parsers know recovery points and IRAP pictures.
func ffprobeKeys(t *testing.T, name string) []bool {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0", mediatest.Fixture(t, name))
	var keys []bool
	for l := range strings.FieldsSeq(string(out)) {
		keys = append(keys, strings.HasPrefix(l, "K"))
	}
	return keys
}

// TestOpenGOPKeyFrames: the I-frames of an x264 open GOP (recovery point
// SEI, no IDR after the first) and x265's CRA pictures are key frames, as
// ffprobe says, and nothing else is; a stream cut at a recovery point
// starts with a key frame.
func TestOpenGOPKeyFrames(t *testing.T) {
	for _, f := range []struct {
		name  string
		codec Codec
		keys  int
	}{
		{"opengop.h264", H264, 5},
		{"opengop-cut.h264", H264, 4},
		{"h265-opengop.h265", H265, 5},
		{"h265-radl.h265", H265, 5},
	} {
		t.Run(f.name, func(t *testing.T) {
			aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, f.name)), f.codec)
			want := ffprobeKeys(t, f.name)
			if len(want) != len(aus) {
				t.Fatalf("%d access units, ffprobe %d packets", len(aus), len(want))
			}
			got := make([]bool, len(aus))
			n := 0
			for i, au := range aus {
				got[i] = f.codec.IsKey(au)
				if got[i] {
					n++
				}
			}
			if !slices.Equal(got, want) || n != f.keys || !got[0] {
				t.Fatalf("key frames %v\nffprobe    %v (%d, want %d)", got, want, n, f.keys)
			}
		})
	}
}

// derive returns the PTS the deriver gives every access unit of a fixture
// at 30 fps, in milliseconds.
func derive(t *testing.T, name string, c Codec) []int64 {
	t.Helper()
	const frame = time.Second / 30
	aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, name)), c)
	p := &Params{Codec: c}
	d := &PTSDeriver{Codec: c}
	var out []int64
	for i, au := range aus {
		if _, err := p.Update(au); err != nil {
			t.Fatal(err)
		}
		pts, err := d.PTS(au, time.Duration(i)*frame, frame, p)
		if err != nil {
			t.Fatalf("AU %d: %v", i, err)
		}
		out = append(out, pts.Milliseconds())
	}
	return out
}

// TestPTSOpenGOPAndLeadingPictures: presentation times derived from the
// POC match the encoder's for x264 open GOP, x265 open GOP (RASL after each
// CRA) and x265 IDR_W_RADL with leading pictures, up to one constant shift
// (room made for leading pictures before the first one is seen); no two
// pictures share a time.
func TestPTSOpenGOPAndLeadingPictures(t *testing.T) {
	for _, f := range []struct {
		name  string
		codec Codec
	}{
		{"opengop.h264", H264},
		{"h265-opengop.h265", H265},
		{"h265-radl.h265", H265},
	} {
		t.Run(f.name, func(t *testing.T) {
			got := derive(t, f.name, f.codec)
			var want []int64
			for l := range strings.FieldsSeq(string(mediatest.ReadFixture(t, f.name+".pts"))) {
				v, _ := strconv.ParseInt(l, 10, 64)
				want = append(want, v)
			}
			if len(want) != len(got) {
				t.Fatalf("%d timestamps for %d access units", len(want), len(got))
			}
			shift := got[0] - want[0]
			for i := range want {
				if d := got[i] - want[i] - shift; d < -1 || d > 1 {
					t.Fatalf("AU %d: pts %d ms, encoder said %d ms (+%d)\n got %v\nwant %v", i, got[i], want[i], shift, got, want)
				}
			}
			sorted := slices.Clone(got)
			slices.Sort(sorted)
			if len(slices.Compact(sorted)) != len(got) {
				t.Fatalf("pictures share a time: %v", got)
			}
		})
	}
}

// TestRecoveryPointSEI: a recovery point with recovery_frame_cnt 0 is found
// behind other SEI messages and emulation prevention bytes; a count > 0
// (intra refresh) or no recovery point is not a key frame.
func TestRecoveryPointSEI(t *testing.T) {
	userData := []byte{5, 21, 0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7, 0x96, 0x2c, 0xd8, 0x20, 0xd9, 0x23, 0xee, 0xef, 0, 0, 3, 1, 2, 3}
	recovery := func(cnt uint32) []byte {
		w := &bitWriter{}
		w.ue(cnt)
		w.bit(1)     // exact_match_flag
		w.bit(0)     // broken_link_flag
		w.bits(0, 2) // changing_slice_group_idc
		for w.nbit%8 != 0 {
			w.bit(0)
		}
		return append([]byte{6, byte(len(w.buf))}, w.buf...)
	}
	iSlice := []byte{0x21, 0x88, 0x84} // nal_ref_idc 1, non-IDR; first_mb 0, slice_type 7 (I)
	pSlice := []byte{0x21, 0x9a, 0x84} // slice_type 5 (P)
	sei := func(msgs ...[]byte) []byte {
		n := []byte{0x06}
		for _, m := range msgs {
			n = append(n, m...)
		}
		return append(n, 0x80)
	}
	for _, c := range []struct {
		name string
		au   [][]byte
		key  bool
	}{
		{"recovery point after user data", [][]byte{sei(userData, recovery(0)), iSlice}, true},
		{"recovery point alone", [][]byte{sei(recovery(0)), iSlice}, true},
		{"intra refresh", [][]byte{sei(recovery(29)), iSlice}, false},
		{"no recovery point", [][]byte{sei(userData), iSlice}, false},
		{"recovery point on a P slice", [][]byte{sei(recovery(0)), pSlice}, false},
		{"truncated SEI", [][]byte{{0x06, 6, 40, 1}, iSlice}, false},
		{"IDR", [][]byte{{0x65, 0x88}}, true},
	} {
		if got := H264.IsKey(c.au); got != c.key {
			t.Errorf("%s: key %v, want %v", c.name, got, c.key)
		}
	}
}
