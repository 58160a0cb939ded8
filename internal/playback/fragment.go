package playback

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// Track is one track of a fragment as players need it: its codec
// configuration and, once a fragment is parsed, its frames in decoding
// order.
type Track struct {
	// Number is the Matroska track number.
	Number uint64
	// CodecID is media.CodecH264, media.CodecH265 or media.CodecAAC.
	CodecID      string
	CodecPrivate []byte

	// Video: parameter sets from the codec private data (the first of
	// each kind), picture size and the reorder depth the SPS declares.
	VPS, SPS, PPS []byte
	Width, Height int
	// Reorder is how many frames may precede a frame in decoding order
	// and follow it in presentation order (max_num_reorder_frames); -1
	// when the SPS does not say.
	Reorder int

	// Audio.
	AAC mpeg4audio.AudioSpecificConfig

	Frames []Frame
}

// Frame is one access unit or audio frame.
type Frame struct {
	// PTS is the presentation time relative to the fragment's Cluster
	// timecode; DTS the decoding time, filled by Timing for video.
	PTS, DTS time.Duration
	Key      bool
	// Data is length-prefixed with 4-byte lengths (video) or a raw AAC
	// frame (audio).
	Data []byte
}

// IsVideo reports whether the track carries video.
func (t *Track) IsVideo() bool { return t.CodecID != media.CodecAAC }

// Fragment is one stored fragment, parsed: track 1 first, then the audio
// track if there is one.
type Fragment struct {
	Tracks []*Track
}

// Track returns the track with a Matroska number, or nil.
func (f *Fragment) Track(number uint64) *Track {
	for _, t := range f.Tracks {
		if t.Number == number {
			return t
		}
	}
	return nil
}

// Video returns the video track, or nil for audio-only streams.
func (f *Fragment) Video() *Track {
	if len(f.Tracks) > 0 && f.Tracks[0].IsVideo() {
		return f.Tracks[0]
	}
	return nil
}

// SameConfig reports whether two fragments can share an initialization
// segment: the same tracks with the same codecs and codec private data.
func SameConfig(a, b []*Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Number != b[i].Number || a[i].CodecID != b[i].CodecID || !bytes.Equal(a[i].CodecPrivate, b[i].CodecPrivate) {
			return false
		}
	}
	return true
}

// SameTracks reports whether two fragments have the same track numbers and
// codecs (codec private data may differ).
func SameTracks(a, b []*Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Number != b[i].Number || a[i].CodecID != b[i].CodecID {
			return false
		}
	}
	return true
}

// ParseHeader reads the tracks of a stored fragment's Matroska header.
func ParseHeader(header []byte) ([]*Track, error) {
	d := mkv.NewDemuxer(bytes.NewReader(header))
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the stream header has no Tracks", ErrInvalidMedia)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading the stream header: %v", ErrInvalidMedia, err)
		}
		if ev.Type == mkv.EventHeader {
			return tracksOf(ev.Header)
		}
	}
}

// ParseFragment reads a stored fragment (its connection's header and its
// body) into tracks and frames.
func ParseFragment(header, body []byte) (*Fragment, error) {
	d := mkv.NewDemuxer(io.MultiReader(bytes.NewReader(header), bytes.NewReader(body)))
	var (
		f         *Fragment
		scale     int64
		clusterTC int64
		inCluster bool
		clusters  int
		// All frame bytes share one buffer: the body bounds their size.
		arena = make([]byte, 0, len(body))
	)
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidMedia, err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			tracks, err := tracksOf(ev.Header)
			if err != nil {
				return nil, err
			}
			f = &Fragment{Tracks: tracks}
			scale = int64(ev.Header.TimecodeScale)
			if scale == 0 {
				scale = mkv.DefaultTimecodeScale
			}
		case mkv.EventCluster:
			if f == nil {
				return nil, fmt.Errorf("%w: a Cluster before the stream header", ErrInvalidMedia)
			}
			clusters++
			if clusters > 1 {
				return nil, fmt.Errorf("%w: more than one Cluster in a fragment", ErrInvalidMedia)
			}
			clusterTC, inCluster = ev.Timecode, true
		case mkv.EventClusterEnd:
			inCluster = false
		case mkv.EventBlock:
			if !inCluster {
				return nil, fmt.Errorf("%w: a block outside a Cluster", ErrInvalidMedia)
			}
			t := f.Track(ev.Block.Track)
			if t == nil {
				continue // a track playback does not use
			}
			pts := time.Duration((ev.Timecode - clusterTC) * scale)
			if arena, err = addBlock(t, arena, pts, ev.Key, ev.Block.Frames); err != nil {
				return nil, err
			}
		}
	}
	if f == nil || clusters == 0 {
		return nil, fmt.Errorf("%w: the fragment has no Cluster", ErrInvalidMedia)
	}
	if len(f.Tracks[0].Frames) == 0 {
		return nil, fmt.Errorf("%w: the fragment has no frame of track %d", ErrInvalidMedia, f.Tracks[0].Number)
	}
	return f, nil
}

// addBlock appends a block's frames to a track, copying them into arena.
func addBlock(t *Track, arena []byte, pts time.Duration, key bool, frames [][]byte) ([]byte, error) {
	if t.IsVideo() {
		if len(frames) != 1 {
			return arena, fmt.Errorf("%w: a laced video block", ErrInvalidMedia)
		}
		start := len(arena)
		var err error
		if arena, err = appendAVCC(arena, frames[0], t.lengthSize()); err != nil {
			return arena, err
		}
		t.Frames = append(t.Frames, Frame{PTS: pts, DTS: pts, Key: key, Data: arena[start:len(arena):len(arena)]})
		return arena, nil
	}
	// Laced audio frames share the block's timecode; each follows the
	// previous by one frame's duration.
	for i, fr := range frames {
		if len(fr) == 0 {
			return arena, fmt.Errorf("%w: an empty audio frame", ErrInvalidMedia)
		}
		start := len(arena)
		arena = append(arena, fr...)
		at := pts + time.Duration(i)*t.aacFrameDuration()
		t.Frames = append(t.Frames, Frame{PTS: at, DTS: at, Key: true, Data: arena[start:len(arena):len(arena)]})
	}
	return arena, nil
}

// appendAVCC appends a length-prefixed access unit with 4-byte lengths,
// converting from the stream's length size.
func appendAVCC(dst, au []byte, lengthSize int) ([]byte, error) {
	if len(au) == 0 {
		return dst, fmt.Errorf("%w: an empty video frame", ErrInvalidMedia)
	}
	if lengthSize == 4 {
		// Checked, not trusted: a broken length would make every muxer
		// write garbage.
		for p := au; len(p) > 0; {
			if len(p) < 4 {
				return dst, fmt.Errorf("%w: truncated NAL unit length", ErrInvalidMedia)
			}
			n := binary.BigEndian.Uint32(p)
			if n == 0 || uint64(n) > uint64(len(p)-4) {
				return dst, fmt.Errorf("%w: NAL unit length %d with %d bytes left", ErrInvalidMedia, n, len(p)-4)
			}
			p = p[4+n:]
		}
		return append(dst, au...), nil
	}
	nalus, err := codec.SplitLengthPrefixed(nil, au, lengthSize)
	if err != nil {
		return dst, fmt.Errorf("%w: %v", ErrInvalidMedia, err)
	}
	for _, n := range nalus {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(n)))
		dst = append(dst, n...)
	}
	return dst, nil
}

func (t *Track) lengthSize() int {
	if len(t.CodecPrivate) > 4 && t.CodecID == media.CodecH264 {
		return int(t.CodecPrivate[4]&3) + 1
	}
	if len(t.CodecPrivate) > 21 && t.CodecID == media.CodecH265 {
		return int(t.CodecPrivate[21]&3) + 1
	}
	return 4
}

// aacSamples is the number of samples in one AAC frame.
func (t *Track) aacSamples() int {
	if t.AAC.FrameLengthFlag {
		return 960
	}
	return 1024
}

func (t *Track) aacFrameDuration() time.Duration {
	return time.Duration(t.aacSamples()) * time.Second / time.Duration(t.AAC.SampleRate)
}

// tracksOf checks a stream header against what playback supports, as the
// service does: track 1 H.264, H.265 or AAC (audio only), an optional AAC
// track 2. Other tracks are left out.
func tracksOf(h *mkv.Header) ([]*Track, error) {
	if len(h.Tracks) == 0 {
		return nil, fmt.Errorf("%w: the stream has no tracks", ErrUnsupportedMedia)
	}
	first, err := trackOf(&h.Tracks[0])
	if err != nil {
		return nil, err
	}
	tracks := []*Track{first}
	if first.IsVideo() {
		for i := 1; i < len(h.Tracks); i++ {
			if h.Tracks[i].CodecID != media.CodecAAC {
				continue
			}
			audio, err := trackOf(&h.Tracks[i])
			if err != nil {
				return nil, err
			}
			tracks = append(tracks, audio)
			break
		}
	}
	return tracks, nil
}

func trackOf(mt *mkv.Track) (*Track, error) {
	t := &Track{Number: mt.Number, CodecID: mt.CodecID, CodecPrivate: mt.CodecPrivate, Reorder: -1}
	switch mt.CodecID {
	case media.CodecH264, media.CodecH265, media.CodecAAC:
	default:
		return nil, fmt.Errorf("%w: track %d has codec %q; playback needs %s or %s video (track 1) and optionally %s audio",
			ErrUnsupportedMedia, mt.Number, mt.CodecID, media.CodecH264, media.CodecH265, media.CodecAAC)
	}
	if len(mt.CodecPrivate) == 0 {
		return nil, fmt.Errorf("%w: track %d (%s) has no codec private data", ErrMissingCodecPrivate, mt.Number, mt.CodecID)
	}
	var err error
	switch mt.CodecID {
	case media.CodecH264:
		err = t.parseH264()
	case media.CodecH265:
		err = t.parseH265()
	case media.CodecAAC:
		err = t.AAC.Unmarshal(mt.CodecPrivate)
		if err == nil && (t.AAC.SampleRate <= 0 || t.AAC.ChannelConfig == 0) {
			err = fmt.Errorf("sample rate %d, channel configuration %d", t.AAC.SampleRate, t.AAC.ChannelConfig)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: track %d (%s): %v", ErrInvalidCodecPrivate, mt.Number, mt.CodecID, err)
	}
	return t, nil
}

func (t *Track) parseH264() error {
	cfg, err := codec.ParseAVCC(t.CodecPrivate)
	if err != nil {
		return err
	}
	if len(cfg.SPS) == 0 || len(cfg.PPS) == 0 {
		return fmt.Errorf("avcC without SPS or PPS")
	}
	var sps h264.SPS
	if err := sps.Unmarshal(cfg.SPS[0]); err != nil {
		return fmt.Errorf("SPS: %w", err)
	}
	t.SPS, t.PPS = cfg.SPS[0], cfg.PPS[0]
	t.Width, t.Height = sps.Width(), sps.Height()
	switch {
	case sps.VUI != nil && sps.VUI.BitstreamRestriction != nil:
		t.Reorder = int(sps.VUI.BitstreamRestriction.MaxNumReorderFrames)
	case sps.ProfileIdc == 66 || sps.PicOrderCntType == 2:
		t.Reorder = 0 // baseline, or output order is decoding order
	}
	return nil
}

func (t *Track) parseH265() error {
	cfg, err := codec.ParseHVCC(t.CodecPrivate)
	if err != nil {
		return err
	}
	if len(cfg.VPS) == 0 || len(cfg.SPS) == 0 || len(cfg.PPS) == 0 {
		return fmt.Errorf("hvcC without VPS, SPS or PPS")
	}
	var sps h265.SPS
	if err := sps.Unmarshal(cfg.SPS[0]); err != nil {
		return fmt.Errorf("SPS: %w", err)
	}
	t.VPS, t.SPS, t.PPS = cfg.VPS[0], cfg.SPS[0], cfg.PPS[0]
	t.Width, t.Height = sps.Width(), sps.Height()
	if n := len(sps.MaxNumReorderPics); n > 0 {
		t.Reorder = int(sps.MaxNumReorderPics[n-1])
	}
	return nil
}
