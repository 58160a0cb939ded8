package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/mkv"
)

func paramsOf(t *testing.T, aus [][][]byte, c Codec) *Params {
	t.Helper()
	p := &Params{Codec: c}
	for _, au := range aus {
		if _, err := p.Update(au); err != nil {
			t.Fatal(err)
		}
		if p.Ready() {
			return p
		}
	}
	t.Fatal("no parameter sets in the stream")
	return nil
}

// TestInfoMatchesFFprobe checks picture size, profile, level and frame rate
// read from the SPS against what ffprobe says.
func TestInfoMatchesFFprobe(t *testing.T) {
	for _, f := range rawFixtures {
		t.Run(f.name, func(t *testing.T) {
			aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, f.name)), f.codec)
			info := paramsOf(t, aus, f.codec).Info()
			s := mediatest.Probe(t, mediatest.Fixture(t, f.name), nil, "")[0]
			if info.Width != s.Width || info.Height != s.Height {
				t.Errorf("size %dx%d, ffprobe %dx%d", info.Width, info.Height, s.Width, s.Height)
			}
			if info.Profile != s.Profile {
				t.Errorf("profile %q, ffprobe %q", info.Profile, s.Profile)
			}
			level := float64(s.Level) / 10
			if f.codec == H265 {
				level = float64(s.Level) / 30
			}
			if got, _ := strconv.ParseFloat(info.Level, 64); got != level {
				t.Errorf("level %s, ffprobe %g", info.Level, level)
			}
			num, den, _ := strings.Cut(s.RFrameRate, "/")
			n, _ := strconv.ParseFloat(num, 64)
			d, _ := strconv.ParseFloat(den, 64)
			if math.Abs(info.FPS-n/d) > 0.01 {
				t.Errorf("fps %g, ffprobe %s", info.FPS, s.RFrameRate)
			}
			if !strings.Contains(info.String(), fmt.Sprintf("%dx%d", s.Width, s.Height)) {
				t.Errorf("String() = %q", info.String())
			}
		})
	}
}

// ffmpegCodecPrivate remuxes a raw fixture to Matroska with ffmpeg and
// returns the CodecPrivate ffmpeg wrote.
func ffmpegCodecPrivate(t *testing.T, name string) []byte {
	t.Helper()
	out := mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-i", mediatest.Fixture(t, name), "-frames:v", "1", "-c", "copy", "-bsf:v", "setts=ts=N", "-f", "matroska", "-")
	d := mkv.NewDemuxer(bytes.NewReader(out))
	for {
		ev, err := d.Next()
		if err != nil {
			t.Fatalf("no header in ffmpeg's output: %v", err)
		}
		if ev.Type == mkv.EventHeader {
			return ev.Header.Tracks[0].CodecPrivate
		}
	}
}

func TestAVCCMatchesFFmpeg(t *testing.T) {
	for _, name := range []string{"h264-baseline.h264", "h264-high-bframes.h264"} {
		t.Run(name, func(t *testing.T) {
			aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, name)), H264)
			got, err := paramsOf(t, aus, H264).CodecPrivate()
			if err != nil {
				t.Fatal(err)
			}
			want := ffmpegCodecPrivate(t, name)
			if !bytes.Equal(got, want) {
				t.Fatalf("avcC\n got %x\nwant %x (ffmpeg)", got, want)
			}
			cfg, err := ParseAVCC(got)
			if err != nil || cfg.LengthSize != 4 || len(cfg.SPS) != 1 || len(cfg.PPS) != 1 {
				t.Fatalf("ParseAVCC: %+v, %v", cfg, err)
			}
		})
	}
}

func TestHVCCMatchesFFmpeg(t *testing.T) {
	aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, "h265.h265")), H265)
	p := paramsOf(t, aus, H265)
	got, err := p.CodecPrivate()
	if err != nil {
		t.Fatal(err)
	}
	want := ffmpegCodecPrivate(t, "h265.h265")
	// ffmpeg fills a few informative fields from the VUI; the profile,
	// tier, level and constraint flags and the parameter sets must agree.
	if !bytes.Equal(got[:13], want[:13]) {
		t.Fatalf("profile_tier_level\n got %x\nwant %x", got[:13], want[:13])
	}
	gc, err := ParseHVCC(got)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ParseHVCC(want)
	if err != nil {
		t.Fatal(err)
	}
	if gc.LengthSize != 4 || wc.LengthSize != 4 {
		t.Fatalf("length size %d (ffmpeg %d)", gc.LengthSize, wc.LengthSize)
	}
	for i, pair := range [][2][][]byte{{gc.VPS, wc.VPS}, {gc.SPS, wc.SPS}, {gc.PPS, wc.PPS}} {
		// x265 pads its PPS with a zero byte that the byte stream format
		// treats as trailing_zero_8bits; kvsgo drops it.
		if len(pair[0]) != len(pair[1]) || !bytes.Equal(pair[0][0], trimZeros(pair[1][0])) {
			t.Fatalf("parameter set array %d differs from ffmpeg's", i)
		}
	}
	if got[16]&3 != want[16]&3 || got[17] != want[17] || got[18] != want[18] {
		t.Fatalf("chroma/bit depth %x, ffmpeg %x", got[16:19], want[16:19])
	}
}

func TestParamsChangeAndErrors(t *testing.T) {
	p := &Params{Codec: H264}
	if _, err := p.CodecPrivate(); !errors.Is(err, ErrNoParamSets) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := p.Update([][]byte{{0x67, 0x42}}); !errors.Is(err, ErrUnsupportedSPS) {
		t.Fatalf("truncated SPS: %v", err)
	}
	aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, "h264-baseline.h264")), H264)
	changed, err := p.Update(aus[0])
	if err != nil || !changed || !p.Ready() {
		t.Fatalf("first update: changed=%v ready=%v err=%v", changed, p.Ready(), err)
	}
	if changed, _ := p.Update(aus[0]); changed {
		t.Fatal("the same parameter sets reported as a change")
	}
	other := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, "h264-high-bframes.h264")), H264)
	if changed, _ := p.Update(other[0]); !changed || p.Info().Profile != "High" {
		t.Fatalf("new SPS: changed=%v profile=%s", changed, p.Info().Profile)
	}
}

func TestPTSFromPictureOrderCount(t *testing.T) {
	const frame = time.Second / 30
	for _, f := range rawFixtures {
		t.Run(f.name, func(t *testing.T) {
			aus := readAll(t, bytes.NewReader(mediatest.ReadFixture(t, f.name)), f.codec)
			// The encoder's own timestamps, kept by scripts/fixtures for the
			// streams with B-frames.
			var want []int64
			if f.name != "h264-baseline.h264" {
				for l := range strings.FieldsSeq(string(mediatest.ReadFixture(t, f.name+".pts"))) {
					v, _ := strconv.ParseInt(l, 10, 64)
					want = append(want, v)
				}
				if len(want) != len(aus) {
					t.Fatalf("%d timestamps for %d access units", len(want), len(aus))
				}
			}
			p := &Params{Codec: f.codec}
			d := &PTSDeriver{Codec: f.codec}
			for i, au := range aus {
				if _, err := p.Update(au); err != nil {
					t.Fatal(err)
				}
				dts := time.Duration(i) * frame
				pts, err := d.PTS(au, dts, frame, p)
				if err != nil {
					t.Fatalf("AU %d: %v", i, err)
				}
				if want == nil { // no B-frames: presentation order is decoding order
					if pts != dts {
						t.Fatalf("AU %d: pts %v, dts %v", i, pts, dts)
					}
					continue
				}
				if ms := pts.Milliseconds(); ms < want[i]-1 || ms > want[i]+1 {
					t.Fatalf("AU %d: pts %d ms, encoder said %d ms", i, ms, want[i])
				}
			}
		})
	}
}
