package playback

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"

	"github.com/kvsgo/kvsgo/internal/store"
)

// GetClip's limits, as the service's: a clip holds at most the first 200
// fragments or 100 MB of media from its start.
const (
	ClipMaxFragments = 200
	ClipMaxBytes     = 100 << 20
)

// ClipFragments selects a clip's fragments by the same rules as a
// playlist's (range, ingest order, duplicates left out), then cuts the
// list at the service's limits.
func (m *Sessions) ClipFragments(stream store.StreamID, producerTime bool, start, end time.Time) ([]store.Fragment, error) {
	sess := Session{Stream: stream, Mode: ModeOnDemand, ProducerTime: producerTime, Start: start, End: end,
		MaxResults: ClipMaxFragments, Discontinuity: DiscontinuityNever}
	st := &state{}
	if err := m.advance(st, &sess, m.now()); err != nil {
		return nil, err
	}
	var out []store.Fragment
	var size int64
	for _, e := range st.entries {
		if size+e.Fragment.BodyLen > ClipMaxBytes && len(out) > 0 {
			break
		}
		size += e.Fragment.BodyLen
		out = append(out, e.Fragment)
	}
	if len(out) == 0 {
		return nil, ErrNoFragments
	}
	return out, nil
}

// ClipFile is a clip ready to be written.
type ClipFile struct {
	p pmp4.Presentation
}

// Write writes the clip: a progressive MP4 file, moov before mdat.
func (c *ClipFile) Write(w io.Writer) error {
	if err := c.p.Marshal(w); err != nil {
		return fmt.Errorf("writing the clip: %w", err)
	}
	return nil
}

// NewClip lays fragments out as one MP4 presentation, each fragment at its
// place on a common clock, so that gaps between fragments stay gaps. Every
// fragment must have the first one's tracks and codec configuration.
func NewClip(frags []*Fragment, places []Placement) (*ClipFile, error) {
	if len(frags) == 0 {
		return nil, ErrNoFragments
	}
	first := frags[0].Tracks
	for i, f := range frags[1:] {
		if !SameTracks(f.Tracks, first) {
			return nil, fmt.Errorf("%w: the tracks change at fragment %d of the clip", ErrUnsupportedMedia, i+2)
		}
		if !SameConfig(f.Tracks, first) {
			return nil, fmt.Errorf("%w: the codec private data changes at fragment %d of the clip; ask for a clip that ends before it", ErrInvalidCodecPrivate, i+2)
		}
	}
	c := &ClipFile{}
	p := &c.p
	var starts []time.Duration // of each track in p.Tracks: its first presentation time
	for _, t := range first {
		track := &pmp4.Track{ID: int(t.Number), TimeScale: t.Timescale(), Codec: t.mp4Codec()}
		var all []sampleTime
		var payloads [][]byte
		var sync []bool
		for k, f := range frags {
			ft := f.Track(t.Number)
			all = append(all, ft.times(places[k].BaseMS, places[k].FrameInterval)...)
			for _, fr := range ft.Frames {
				payloads = append(payloads, fr.Data)
				sync = append(sync, !t.IsVideo() || fr.Key)
			}
		}
		if len(all) == 0 {
			continue
		}
		// One clock through the whole clip: a sample lasts until the next
		// one is decoded (a gap between fragments becomes a long last
		// frame); decoding times never go back. The first frame shown is
		// at the track's media time 0: the frames decoded before it are
		// given negative composition offsets (ctts version 1) rather than
		// an edit that skips them, so that an edit can still start the
		// track after the others (ffmpeg shows a skip edit's first frame at
		// 0 whatever the edit says).
		minPTS := all[0].PTS
		for _, a := range all {
			minPTS = min(minPTS, a.PTS)
		}
		lead := minPTS - all[0].DTS
		pos := all[0].DTS
		for i := range all {
			next := pos + int64(all[i].Duration)
			if i+1 < len(all) {
				next = max(all[i+1].DTS, pos+1)
			}
			payload := payloads[i]
			track.Samples = append(track.Samples, &pmp4.Sample{
				Duration:        uint32(next - pos),
				PTSOffset:       int32(all[i].PTS - lead - pos),
				IsNonSyncSample: !sync[i],
				PayloadSize:     uint32(len(payload)),
				GetPayload:      func() ([]byte, error) { return payload, nil },
			})
			pos = next
		}
		starts = append(starts, time.Duration(rescale(minPTS, int64(t.Timescale()), int64(time.Second))))
		p.Tracks = append(p.Tracks, track)
	}
	if len(p.Tracks) == 0 {
		return nil, ErrNoFragments
	}
	// The clip starts where its earliest track does, as the stream holds it
	// (audio before the first picture, such as an encoder's priming frame,
	// is kept, as players play it from a Matroska file or HLS); a track
	// that starts later does so after a pause (pmp4: a positive offset is
	// an empty edit).
	clipStart := slices.Min(starts)
	for i, track := range p.Tracks {
		track.TimeOffset = int32(rescale(int64(starts[i]-clipStart), int64(time.Second), int64(track.TimeScale)))
	}
	return c, nil
}
