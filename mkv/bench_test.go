package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// BenchmarkWriterWriteFrame: one op is one 20 kB frame (a 1 Mbit/s 480p30
// stream has frames of about 4 kB; a key frame of 1080p about 100 kB), a
// key frame every 30.
func BenchmarkWriterWriteFrame(b *testing.B) {
	for _, size := range []int{4 << 10, 20 << 10, 100 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			w, _ := NewWriter(io.Discard, goldenHeader())
			frame := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := w.WriteFrame(1, time.Duration(i)*33*time.Millisecond, i%30 == 0, frame); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func byteSize(n int) string {
	return map[int]string{4 << 10: "4KiB", 20 << 10: "20KiB", 100 << 10: "100KiB"}[n]
}

// BenchmarkDemuxer: reading kvssink's PutMedia body (what the server's
// ingest does), per byte.
func BenchmarkDemuxer(b *testing.B) {
	body, err := os.ReadFile(mediatest.Reference(b, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDemuxer(bytes.NewReader(body))
		for {
			_, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
