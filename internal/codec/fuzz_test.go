package codec

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func seedFixtures(f *testing.F, n int, args ...any) {
	for _, name := range []string{"h264-baseline.h264", "h264-high-bframes.h264", "h265.h265", "opengop.h264", "h265-opengop.h265", "h265-radl.h265"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]any{b[:min(n, len(b))]}, args...)...)
	}
}

// FuzzAnnexBReader feeds arbitrary bytes, in arbitrary read sizes, through
// the whole Annex-B path: access units, parameter sets, codec private data
// and timestamps. Nothing may panic, and memory stays bounded.
func FuzzAnnexBReader(f *testing.F) {
	seedFixtures(f, 1500, uint8(7), false)
	seedFixtures(f, 1500, uint8(200), true)
	f.Add([]byte{0, 0, 1, 0x67, 0, 0, 0, 1, 0x68, 0, 0, 1, 0x65, 0x88}, uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, h265 bool) {
		c := H264
		if h265 {
			c = H265
		}
		r := NewAnnexBReader(&chunkReader{data: data, rng: rand.New(rand.NewPCG(uint64(chunk), 1)), max: int(chunk) + 1}, c)
		r.MaxAccessUnit = 1 << 16
		p := &Params{Codec: c}
		d := &PTSDeriver{Codec: c}
		total := 0
		var buf []byte
		for i := 0; ; i++ {
			au, err := r.ReadAccessUnit()
			if errors.Is(err, io.EOF) || errors.Is(err, ErrNALUTooLarge) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range au {
				if len(n) == 0 {
					t.Fatal("empty NAL unit")
				}
				total += len(n)
			}
			if total > len(data) {
				t.Fatalf("%d NAL bytes out of %d input bytes", total, len(data))
			}
			_, _ = p.Update(au)
			c.IsKey(au)
			buf = c.AppendLengthPrefixed(buf[:0], au)
			if _, err := SplitLengthPrefixed(nil, buf, 4); err != nil && len(buf) > 0 {
				t.Fatalf("length-prefixed form does not split back: %v", err)
			}
			if p.Ready() {
				_, _ = d.PTS(au, time.Duration(i)*time.Millisecond, time.Millisecond, p)
				cpd, err := p.CodecPrivate()
				if err == nil {
					parse := ParseAVCC
					if h265 {
						parse = ParseHVCC
					}
					cfg, err := parse(cpd)
					if err != nil {
						t.Fatalf("own codec private data does not parse: %v", err)
					}
					if len(cfg.SPS) != 1 || !bytes.Equal(cfg.SPS[0], p.SPS()) {
						t.Fatal("codec private data lost the SPS")
					}
				}
			}
		}
	})
}

// FuzzParseDecoderConfig: avcC and hvcC records from the network (a
// Matroska CodecPrivate) never panic the parsers.
func FuzzParseDecoderConfig(f *testing.F) {
	f.Add([]byte{1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 4, 0x67, 1, 2, 3, 1, 0, 2, 0x68, 1})
	f.Add(make([]byte, 23))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (DecoderConfig, error){ParseAVCC, ParseHVCC} {
			cfg, err := parse(b)
			if err != nil {
				continue
			}
			for _, n := range cfg.NALUs() {
				if len(n) == 0 {
					t.Fatal("empty parameter set accepted")
				}
			}
		}
	})
}

// FuzzSPS: a hostile sequence parameter set (from a camera, a file or the
// network) never panics the SPS, avcC/hvcC and POC paths.
func FuzzSPS(f *testing.F) {
	for _, name := range []string{"h264-high-bframes.h264", "h265.h265"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		c := H264
		if name == "h265.h265" {
			c = H265
		}
		aus := readAll(f, bytes.NewReader(b[:20000]), c)
		for _, n := range aus[0] {
			f.Add(n, aus[1][len(aus[1])-1], name == "h265.h265")
		}
	}
	f.Fuzz(func(t *testing.T, ps, slice []byte, h265 bool) {
		c := H264
		if h265 {
			c = H265
		}
		p := &Params{Codec: c}
		if _, err := p.Update([][]byte{ps}); err != nil {
			return
		}
		_ = p.Info().String()
		if p.SPS() != nil {
			d := &PTSDeriver{Codec: c}
			_, _ = d.PTS([][]byte{slice}, 0, time.Millisecond, p)
			_, _ = d.PTS([][]byte{slice}, time.Millisecond, time.Millisecond, p)
		}
		if p.Ready() {
			_, _ = p.CodecPrivate()
		}
	})
}
