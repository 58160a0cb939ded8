package output

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// Matroska writes one continuous Matroska stream: a header, then a Cluster
// per fragment with the frames at their own timestamps. The service's
// per-fragment headers and tags are left out, so players see one plain
// stream; a new header (a new Segment) is written only when the tracks
// change. One Write per frame.
type Matroska struct {
	w         io.Writer
	tracks    []media.Track
	scale     time.Duration
	frag      *kvs.FragmentInfo
	clusterTC int64
	buf       []byte
}

// NewMatroska returns a Matroska writer to w.
func NewMatroska(w io.Writer) *Matroska { return &Matroska{w: w} }

// WriteFrame implements Writer.
func (m *Matroska) WriteFrame(f *kvs.Frame) error {
	b := m.buf[:0]
	frag := f.Fragment
	if m.tracks == nil || frag.TimecodeScale != m.scale || !sameTracks(frag.Tracks, m.tracks) {
		var err error
		if b, err = appendHeader(b, frag); err != nil {
			return err
		}
		m.tracks, m.scale, m.frag = frag.Tracks, frag.TimecodeScale, nil
	}
	if frag.Track(f.Track) == nil {
		return nil // not in the header: nothing can play it
	}
	tc := int64(f.PTS / m.scale)
	if frag != m.frag {
		m.frag, m.clusterTC = frag, int64(frag.Timecode/m.scale)
		b = mkv.AppendClusterStart(b, uint64(max(m.clusterTC, 0)))
	}
	if rel := tc - m.clusterTC; rel < -32768 || rel > 32767 {
		// Too far from the fragment's start for a block's 16 bits: a
		// cluster of its own.
		m.clusterTC = tc
		b = mkv.AppendClusterStart(b, uint64(max(tc, 0)))
	}
	var flags byte
	if f.Key {
		flags = mkv.FlagKey
	}
	b = mkv.AppendSimpleBlockHeader(b, uint64(f.Track), int16(tc-m.clusterTC), flags, len(f.Data))
	b = append(b, f.Data...)
	m.buf = b
	_, err := m.w.Write(b)
	return err
}

func appendHeader(dst []byte, frag *kvs.FragmentInfo) ([]byte, error) {
	h := mkv.Header{TimecodeScale: uint64(frag.TimecodeScale), MuxingApp: "kvsgo", WritingApp: "kvsgo get"}
	_, _ = rand.Read(h.SegmentUID[:])
	for _, t := range frag.Tracks {
		mt := mkv.Track{Number: uint64(t.Number), UID: uint64(t.Number), Name: t.Name, CodecID: t.CodecID, CodecPrivate: t.CodecPrivate}
		switch t.Kind {
		case media.KindVideo:
			mt.Type, mt.Width, mt.Height = mkv.TrackTypeVideo, uint16(t.Width), uint16(t.Height)
		case media.KindAudio:
			mt.Type, mt.SamplingFrequency, mt.Channels = mkv.TrackTypeAudio, t.SampleRate, uint8(t.Channels)
		default:
			continue
		}
		h.Tracks = append(h.Tracks, mt)
	}
	return mkv.AppendHeader(dst, &h)
}

func sameTracks(a, b []media.Track) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) > 0 && &a[0] == &b[0] {
		return true // the reader shares the slice while the header is the same
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Number != y.Number || x.Kind != y.Kind || x.CodecID != y.CodecID || string(x.CodecPrivate) != string(y.CodecPrivate) ||
			x.Width != y.Width || x.Height != y.Height || x.SampleRate != y.SampleRate || x.Channels != y.Channels {
			return false
		}
	}
	return true
}
