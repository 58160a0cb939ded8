package playback

import (
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/kvsgo/kvsgo/media"
)

// mp4Codec is a track's codec as mediacommon's MP4 writers take it.
func (t *Track) mp4Codec() codecs.Codec {
	switch t.CodecID {
	case media.CodecH264:
		return &codecs.H264{SPS: t.SPS, PPS: t.PPS}
	case media.CodecH265:
		return &codecs.H265{VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
	default:
		return &codecs.MPEG4Audio{Config: t.AAC}
	}
}

// InitSegment returns the fMP4 initialization segment (ftyp, moov) of the
// given tracks. Each track keeps its Matroska number as its MP4 track ID.
func InitSegment(tracks []*Track) ([]byte, error) {
	var init fmp4.Init
	for _, t := range tracks {
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: int(t.Number), TimeScale: t.Timescale(), Codec: t.mp4Codec()})
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("writing the fMP4 initialization segment: %w", err)
	}
	return buf.Bytes(), nil
}

// Placement says where a fragment goes on the players' timeline.
type Placement struct {
	// BaseMS is the epoch time in milliseconds of the fragment's Cluster
	// timecode: its producer timestamp.
	BaseMS int64
	// FrameInterval is the frame interval to assume when a fragment has a
	// single video frame (its stored duration); zero means 1/30 s.
	FrameInterval time.Duration
	// Sequence numbers the segment (mfhd).
	Sequence uint32
}

// MediaSegment returns the fMP4 media segment (moof, mdat) of a fragment
// with the given tracks (their Matroska numbers).
func MediaSegment(f *Fragment, tracks []uint64, p Placement) ([]byte, error) {
	part := fmp4.Part{SequenceNumber: p.Sequence}
	for _, n := range tracks {
		t := f.Track(n)
		if t == nil {
			return nil, fmt.Errorf("%w: the fragment has no track %d", ErrInvalidMedia, n)
		}
		pt := &fmp4.PartTrack{ID: int(t.Number)}
		st := t.times(p.BaseMS, p.FrameInterval)
		if len(st) > 0 {
			if st[0].DTS < 0 {
				return nil, fmt.Errorf("%w: a decoding time before 1970", ErrInvalidMedia)
			}
			pt.BaseTime = uint64(st[0].DTS)
		}
		for i, fr := range t.Frames {
			pt.Samples = append(pt.Samples, &fmp4.Sample{
				Duration:        st[i].Duration,
				PTSOffset:       int32(st[i].PTS - st[i].DTS),
				IsNonSyncSample: t.IsVideo() && !fr.Key,
				Payload:         fr.Data,
			})
		}
		part.Tracks = append(part.Tracks, pt)
	}
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("writing an fMP4 media segment: %w", err)
	}
	return buf.Bytes(), nil
}
