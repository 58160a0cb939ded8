package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDemuxer: hostile Matroska (a PutMedia body from anyone) never
// panics the demuxer, never makes it hold more than its limits, and always
// ends with io.EOF or an error.
func FuzzDemuxer(f *testing.F) {
	for _, p := range []string{
		"../../shared/reference/mkvgen-golden.mkv",
		"../../shared/reference/kvssink-capture/04_putMedia.body",
		"../../shared/reference/kvs-captures/test_mixed_tags.mkv",
		"../testdata/h264-aac.mkv",
	} {
		b, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4000)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDemuxer(bytes.NewReader(data))
		d.Reader().MaxElementSize = 1 << 16
		for i := 0; ; i++ {
			ev, err := d.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				return
			}
			if i > 4*len(data)+16 {
				t.Fatalf("%d events from %d bytes", i, len(data))
			}
			if ev.Type == EventTags && len(ev.Tags) > MaxTagsPerElement {
				t.Fatalf("%d tags held", len(ev.Tags))
			}
		}
	})
}

// FuzzParseBlock: block bodies, lacing included, never panic and never
// return frames outside the input.
func FuzzParseBlock(f *testing.F) {
	f.Add([]byte{0x81, 0, 0, 0x80, 1, 2, 3})
	f.Add([]byte{0x82, 0, 0x10, 0x06, 2, 0x41, 0x2c, 0x5e, 0xd7, 1, 2})
	f.Add([]byte{0x82, 0, 0x10, 0x02, 2, 255, 45, 4, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBlock(data, nil)
		if err != nil {
			return
		}
		n := 0
		for _, fr := range b.Frames {
			n += len(fr)
		}
		if n > len(data) {
			t.Fatalf("%d frame bytes from a %d-byte block", n, len(data))
		}
	})
}
