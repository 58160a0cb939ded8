package codec

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// rawFixtures are the Annex-B fixtures and their codecs.
var rawFixtures = []struct {
	name  string
	codec Codec
}{
	{"h264-baseline.h264", H264},
	{"h264-high-bframes.h264", H264},
	{"h265.h265", H265},
}

func readAll(t testing.TB, r io.Reader, c Codec) [][][]byte {
	t.Helper()
	ar := NewAnnexBReader(r, c)
	var aus [][][]byte
	for {
		au, err := ar.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			return aus
		}
		if err != nil {
			t.Fatal(err)
		}
		cp := make([][]byte, len(au))
		for i, n := range au {
			cp[i] = append([]byte(nil), n...)
		}
		aus = append(aus, cp)
	}
}

// chunkReader returns its data in reads of pseudo-random sizes up to max.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+c.rng.IntN(c.max), len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestAnnexBReaderMatchesFFprobe(t *testing.T) {
	for _, f := range rawFixtures {
		t.Run(f.name, func(t *testing.T) {
			data := mediatest.ReadFixture(t, f.name)
			aus := readAll(t, bytes.NewReader(data), f.codec)
			streams := mediatest.Probe(t, mediatest.Fixture(t, f.name), nil, "")
			want, _ := strconv.Atoi(streams[0].NbReadFrames)
			if len(aus) != want || want == 0 {
				t.Fatalf("%d access units, ffprobe counts %d packets", len(aus), want)
			}
			keys := 0
			for i, au := range aus {
				if f.codec.IsKey(au) {
					keys++
					if i%25 != 0 {
						t.Errorf("key frame at %d, fixture has one every 25", i)
					}
				}
			}
			if keys != (want+24)/25 {
				t.Errorf("%d key frames, want %d", keys, (want+24)/25)
			}
			// Re-assembling the NAL units gives back every byte of the
			// stream but start codes and AUDs.
			var got, ref []byte
			for _, au := range aus {
				for _, n := range au {
					got = append(got, n...)
				}
			}
			r := NewAnnexBReader(bytes.NewReader(data), f.codec)
			for {
				n, err := r.nextNALU()
				if err != nil {
					break
				}
				ref = append(ref, n...)
			}
			if !bytes.Equal(got, ref) {
				t.Fatal("access units do not hold every NAL unit of the stream")
			}
		})
	}
}

func TestAnnexBReaderAnyReadSize(t *testing.T) {
	for _, f := range rawFixtures {
		data := mediatest.ReadFixture(t, f.name)
		want := readAll(t, bytes.NewReader(data), f.codec)
		readers := map[string]io.Reader{
			"one byte":    iotest.OneByteReader(bytes.NewReader(data)),
			"half":        iotest.HalfReader(bytes.NewReader(data)),
			"random 1-7":  &chunkReader{data: data, rng: rand.New(rand.NewPCG(1, 2)), max: 7},
			"random 1-5k": &chunkReader{data: data, rng: rand.New(rand.NewPCG(3, 4)), max: 5000},
			"data+EOF":    iotest.DataErrReader(bytes.NewReader(data)),
		}
		for name, r := range readers {
			t.Run(f.name+"/"+name, func(t *testing.T) {
				got := readAll(t, r, f.codec)
				if len(got) != len(want) {
					t.Fatalf("%d access units, want %d", len(got), len(want))
				}
				for i := range want {
					if len(got[i]) != len(want[i]) {
						t.Fatalf("AU %d: %d NAL units, want %d", i, len(got[i]), len(want[i]))
					}
					for j := range want[i] {
						if !bytes.Equal(got[i][j], want[i][j]) {
							t.Fatalf("AU %d NAL %d differs", i, j)
						}
					}
				}
			})
		}
	}
}

func TestAnnexBReaderGrouping(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9}
	pps := []byte{0x68, 0xcb, 0x8c, 0xb2}
	aud := []byte{0x09, 0xf0}
	sei := []byte{0x06, 0x05, 0x01, 0xaa, 0x80}
	idrA := []byte{0x65, 0x88, 0x84, 0x21} // first_mb_in_slice = 0
	idrB := []byte{0x65, 0x40, 0x11, 0x22} // first_mb_in_slice != 0: same picture
	p1 := []byte{0x41, 0x9a, 0x02, 0x03}
	p2a := []byte{0x41, 0x9b, 0x04}
	p2b := []byte{0x41, 0x21, 0x05} // second slice of p2

	var s []byte
	s = append(s, 0xde, 0xad)       // junk before the first start code
	s = append(s, 0, 0, 0, 1)       // 4-byte start code
	s = append(s, aud...)           //
	s = append(s, 0, 0, 1)          // 3-byte
	s = append(s, sps...)           //
	s = append(s, 0, 0, 0, 1)       //
	s = append(s, pps...)           //
	s = append(s, 0, 0, 1)          //
	s = append(s, sei...)           //
	s = append(s, 0, 0, 1)          //
	s = append(s, idrA...)          //
	s = append(s, 0, 0, 0, 1)       //
	s = append(s, idrB...)          //
	s = append(s, 0, 0, 0, 0, 0, 1) // trailing_zero_8bits then start code
	s = append(s, p1...)            //
	s = append(s, 0, 0, 1)          //
	s = append(s, 0, 0, 1)          // empty NAL unit
	s = append(s, p2a...)           //
	s = append(s, 0, 0, 1)          //
	s = append(s, p2b...)           //
	s = append(s, 0, 0)             // trailing zeros at the end
	want := [][][]byte{{aud, sps, pps, sei, idrA, idrB}, {p1}, {p2a, p2b}}

	for size := 1; size <= len(s); size++ {
		r := &chunkReader{data: s, rng: rand.New(rand.NewPCG(uint64(size), 9)), max: size}
		got := readAll(t, r, H264)
		if len(got) != len(want) {
			t.Fatalf("reads of up to %d: %d access units, want %d: %x", size, len(got), len(want), got)
		}
		for i := range want {
			if len(got[i]) != len(want[i]) {
				t.Fatalf("reads of up to %d: AU %d has %d NAL units, want %d", size, i, len(got[i]), len(want[i]))
			}
			for j := range want[i] {
				if !bytes.Equal(got[i][j], want[i][j]) {
					t.Fatalf("reads of up to %d: AU %d NAL %d = %x, want %x", size, i, j, got[i][j], want[i][j])
				}
			}
		}
	}
	if !H264.IsKey(want[0]) || H264.IsKey(want[1]) {
		t.Fatal("key frame detection")
	}
}

func TestAnnexBReaderLimits(t *testing.T) {
	// A stream with no start code after its first must not grow memory
	// past the limit.
	data := append([]byte{0, 0, 1, 0x65}, bytes.Repeat([]byte{0xff}, 1<<20)...)
	r := NewAnnexBReader(bytes.NewReader(data), H264)
	r.MaxAccessUnit = 64 << 10
	_, err := r.ReadAccessUnit()
	if !errors.Is(err, ErrNALUTooLarge) {
		t.Fatalf("err = %v, want ErrNALUTooLarge", err)
	}
	// Nothing but junk: no access units, no error.
	r = NewAnnexBReader(bytes.NewReader(bytes.Repeat([]byte{0xab}, 300<<10)), H264)
	if _, err := r.ReadAccessUnit(); !errors.Is(err, io.EOF) {
		t.Fatalf("junk: err = %v, want io.EOF", err)
	}
}

func TestLengthPrefixedRoundTrip(t *testing.T) {
	au := [][]byte{{0x09, 0xf0}, {0x67, 1, 2}, {0x65, 3, 4, 5}}
	b := H264.AppendLengthPrefixed(nil, au)
	want := []byte{0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 4, 0x65, 3, 4, 5}
	if !bytes.Equal(b, want) {
		t.Fatalf("got %x, want %x (AUD dropped)", b, want)
	}
	nalus, err := SplitLengthPrefixed(nil, b, 4)
	if err != nil || len(nalus) != 2 || !bytes.Equal(nalus[1], au[2]) {
		t.Fatalf("split: %x, %v", nalus, err)
	}
	if _, err := SplitLengthPrefixed(nil, []byte{0, 0, 0, 9, 1}, 4); !errors.Is(err, ErrInvalidNALU) {
		t.Fatalf("truncated: %v", err)
	}
	if got := AppendAnnexB(nil, nalus); !bytes.Equal(got, []byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 3, 4, 5}) {
		t.Fatalf("annex-b: %x", got)
	}
}
