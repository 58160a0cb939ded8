package codec

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// loopReader serves data again and again, in reads of chunk bytes, as a
// camera pipe would.
type loopReader struct {
	data  []byte
	pos   int
	chunk int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), l.chunk)], l.data[l.pos:])
	l.pos = (l.pos + n) % len(l.data)
	return n, nil
}

// BenchmarkAnnexBReader: one op is one access unit of the 640x480 baseline
// fixture, read from 4 KiB pipe reads.
func BenchmarkAnnexBReader(b *testing.B) {
	for _, f := range rawFixtures {
		b.Run(f.name, func(b *testing.B) {
			data := mediatest.ReadFixture(b, f.name)
			frames := len(readAll(b, bytes.NewReader(data), f.codec))
			r := NewAnnexBReader(&loopReader{data: data, chunk: 4096}, f.codec)
			b.SetBytes(int64(len(data) / frames))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.ReadAccessUnit(); err != nil && !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFramePath: everything the producer does per frame of a raw
// stream: split, track parameter sets, derive PTS, convert to length
// prefixes.
func BenchmarkFramePath(b *testing.B) {
	data := mediatest.ReadFixture(b, "h264-high-bframes.h264")
	frames := len(readAll(b, bytes.NewReader(data), H264))
	r := NewAnnexBReader(&loopReader{data: data, chunk: 4096}, H264)
	p := &Params{Codec: H264}
	d := &PTSDeriver{Codec: H264}
	var buf []byte
	i := 0
	b.SetBytes(int64(len(data) / frames))
	b.ReportAllocs()
	for b.Loop() {
		au, err := r.ReadAccessUnit()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Update(au); err != nil {
			b.Fatal(err)
		}
		if _, err := d.PTS(au, time.Duration(i)*time.Millisecond, time.Millisecond, p); err != nil {
			b.Fatal(err)
		}
		buf = H264.AppendLengthPrefixed(buf[:0], au)
		i++
	}
}
