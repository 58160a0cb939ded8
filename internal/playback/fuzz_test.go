package playback

import (
	"testing"
	"time"
)

// FuzzParseFragment: a stored fragment's bytes come from producers; the
// parser and the remuxers must refuse what they cannot read, never panic
// or hang, and write segments for what they accept.
func FuzzParseFragment(f *testing.F) {
	for _, v := range [][]string{x264BPyramid, x265Default} {
		src := encode(f, v, true)
		header, bodies := kvsFragments(f, src, epoch)
		f.Add(header, bodies[1])
		f.Add(header, bodies[0][:len(bodies[0])/2])
	}
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3}, []byte{})
	f.Fuzz(func(t *testing.T, header, body []byte) {
		frag, err := ParseFragment(header, body)
		if err != nil {
			return
		}
		p := Placement{BaseMS: epoch.UnixMilli(), FrameInterval: 33 * time.Millisecond}
		var numbers []uint64
		for _, tr := range frag.Tracks {
			numbers = append(numbers, tr.Number)
		}
		if _, err := InitSegment(frag.Tracks); err != nil {
			return // mediacommon refuses some parameter sets our parser takes
		}
		_, _ = MediaSegment(frag, numbers, p)
		_, _ = TSSegment(frag, p)
		if c, err := NewClip([]*Fragment{frag}, []Placement{p}); err == nil {
			_ = c.Write(discard{})
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
