package mkv

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Track types (Matroska TrackType).
const (
	TrackTypeVideo = 1
	TrackTypeAudio = 2
)

// Track is one TrackEntry of the header.
type Track struct {
	Number       uint64
	UID          uint64
	Type         uint8
	Name         string
	CodecID      string
	CodecPrivate []byte
	// DefaultDuration of a frame in nanoseconds, 0 when the file does not
	// say; read (a laced block's frames are that far apart), not written:
	// KVS's layout has no such field.
	DefaultDuration uint64

	// Video.
	Width, Height uint16

	// Audio.
	SamplingFrequency float64
	Channels          uint8
	BitDepth          uint8
}

// Header is what precedes the first Cluster of a stream: the EBML header,
// the Segment, Info and Tracks.
type Header struct {
	SegmentUID [16]byte
	// TimecodeScale is the length of one timecode unit in nanoseconds;
	// 1 000 000 (milliseconds) when zero, as KVS expects.
	TimecodeScale uint64
	Title         string
	MuxingApp     string
	WritingApp    string
	Tracks        []Track
}

// Defaults of the KVS producer SDK, kept so that files look the same.
const (
	DefaultTimecodeScale = 1_000_000
	DefaultTitle         = "Kinesis Video SDK"
	DefaultApp           = "Kinesis Video SDK 1.1.0"
)

func (h *Header) timecodeScale() uint64 {
	if h.TimecodeScale == 0 {
		return DefaultTimecodeScale
	}
	return h.TimecodeScale
}

// track returns the track with the given number.
func (h *Header) track(n uint64) *Track {
	for i := range h.Tracks {
		if h.Tracks[i].Number == n {
			return &h.Tracks[i]
		}
	}
	return nil
}

// ebmlHeader is the 40-byte EBML header the KVS SDK writes.
var ebmlHeader = [...]byte{
	0x1a, 0x45, 0xdf, 0xa3, 0xa3,
	0x42, 0x86, 0x81, 0x01,
	0x42, 0xf7, 0x81, 0x01,
	0x42, 0xf2, 0x81, 0x04,
	0x42, 0xf3, 0x81, 0x08,
	0x42, 0x82, 0x88, 'm', 'a', 't', 'r', 'o', 's', 'k', 'a',
	0x42, 0x87, 0x81, 0x02,
	0x42, 0x85, 0x81, 0x02,
}

// AppendHeader appends the EBML header, an unknown-size Segment, Info and
// Tracks in the KVS SDK's layout: Info with a 2-byte size, Tracks, each
// TrackEntry, Video and Audio with 4-byte sizes.
func AppendHeader(dst []byte, h *Header) ([]byte, error) {
	if len(h.Tracks) == 0 {
		return dst, fmt.Errorf("%w: no tracks", ErrInvalid)
	}
	dst = append(dst, ebmlHeader[:]...)
	dst = append(dst, 0x18, 0x53, 0x80, 0x67, 0xff)

	title, muxing, writing := or(h.Title, DefaultTitle), or(h.MuxingApp, DefaultApp), or(h.WritingApp, DefaultApp)
	var info []byte
	info = appendBytes(info, IDSegmentUID, h.SegmentUID[:])
	info = appendUintN(info, IDTimecodeScale, h.timecodeScale(), 8)
	info = appendString(info, IDTitle, title)
	info = appendString(info, IDMuxingApp, muxing)
	info = appendString(info, IDWritingApp, writing)
	if len(info) >= 1<<14-1 {
		return dst, fmt.Errorf("%w: Info of %d bytes", ErrInvalid, len(info))
	}
	dst = appendID(dst, IDInfo)
	dst = appendSize(dst, uint64(len(info)), 2)
	dst = append(dst, info...)

	var tracks []byte
	for i := range h.Tracks {
		var err error
		if tracks, err = appendTrackEntry(tracks, &h.Tracks[i]); err != nil {
			return dst, err
		}
	}
	dst = appendID(dst, IDTracks)
	dst = appendSize(dst, uint64(len(tracks)), 4)
	return append(dst, tracks...), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func appendTrackEntry(dst []byte, t *Track) ([]byte, error) {
	if t.Number == 0 || t.Number > 127 {
		return dst, fmt.Errorf("%w: track number %d", ErrInvalid, t.Number)
	}
	var e []byte
	e = appendUint(e, IDTrackNumber, t.Number)
	e = appendUintN(e, IDTrackUID, t.UID, 8)
	e = appendUint(e, IDTrackType, uint64(t.Type))
	if t.Name != "" {
		e = appendString(e, IDName, t.Name)
	}
	e = appendString(e, IDCodecID, t.CodecID)
	switch t.Type {
	case TrackTypeVideo:
		e = appendID(e, IDVideo)
		e = appendSize(e, 8, 4)
		e = appendUintN(e, IDPixelWidth, uint64(t.Width), 2)
		e = appendUintN(e, IDPixelHeight, uint64(t.Height), 2)
	case TrackTypeAudio:
		var a []byte
		a = appendID(a, IDSamplingFrequency)
		a = appendSize(a, 8, 1)
		a = binary.BigEndian.AppendUint64(a, math.Float64bits(t.SamplingFrequency))
		a = appendUint(a, IDChannels, uint64(t.Channels))
		if t.BitDepth != 0 {
			a = appendUint(a, IDBitDepth, uint64(t.BitDepth))
		}
		e = appendID(e, IDAudio)
		e = appendSize(e, uint64(len(a)), 4)
		e = append(e, a...)
	default:
		return dst, fmt.Errorf("%w: track type %d", ErrInvalid, t.Type)
	}
	if len(t.CodecPrivate) > 0 {
		e = appendBytes(e, IDCodecPrivate, t.CodecPrivate)
	}
	dst = appendID(dst, IDTrackEntry)
	dst = appendSize(dst, uint64(len(e)), 4)
	return append(dst, e...), nil
}

// AppendClusterStart appends an unknown-size Cluster with its Timecode
// (8 bytes) and Position 0, as the KVS SDK writes it.
func AppendClusterStart(dst []byte, timecode uint64) []byte {
	dst = append(dst, 0x1f, 0x43, 0xb6, 0x75, 0xff)
	dst = appendUintN(dst, IDTimecode, timecode, 8)
	return append(dst, 0xa7, 0x81, 0x00)
}

// SimpleBlock flags.
const (
	FlagKey         = 0x80
	FlagInvisible   = 0x08
	FlagDiscardable = 0x01
)

// AppendSimpleBlockHeader appends a SimpleBlock's ID, 8-byte size, track
// number, relative timecode and flags for a frame of dataLen bytes; the
// frame itself follows.
func AppendSimpleBlockHeader(dst []byte, track uint64, timecode int16, flags byte, dataLen int) []byte {
	dst = append(dst, 0xa3)
	dst = appendSize(dst, uint64(dataLen)+4, 8)
	dst = append(dst, 0x80|byte(track)) // track numbers are at most 127
	return append(dst, byte(uint16(timecode)>>8), byte(timecode), flags)
}

// SimpleTag is one name/value pair of a Tags element.
type SimpleTag struct {
	Name  string
	Value string
}

// Tag names KVS uses.
const (
	TagEndOfFragment   = "AWS_KINESISVIDEO_END_OF_FRAGMENT"
	TagFragmentNumber  = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
	TagServerTimestamp = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
	TagProducerTS      = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
	TagMillisBehindNow = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
	TagContinuation    = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
	TagErrorCode       = "AWS_KINESISVIDEO_ERROR_CODE"
	TagErrorID         = "AWS_KINESISVIDEO_ERROR_ID"
)

// AppendTags appends one Tags element holding one Tag with the given
// SimpleTags, every size field 8 bytes wide as the KVS SDK writes them.
func AppendTags(dst []byte, tags ...SimpleTag) []byte {
	inner := 0
	for _, t := range tags {
		inner += simpleTagLen(t)
	}
	dst = append(dst, 0x12, 0x54, 0xc3, 0x67)
	dst = appendSize(dst, uint64(inner+10), 8)
	dst = append(dst, 0x73, 0x73)
	dst = appendSize(dst, uint64(inner), 8)
	for _, t := range tags {
		dst = append(dst, 0x67, 0xc8)
		dst = appendSize(dst, uint64(simpleTagLen(t)-10), 8)
		dst = append(dst, 0x45, 0xa3)
		dst = appendSize(dst, uint64(len(t.Name)), 8)
		dst = append(dst, t.Name...)
		dst = append(dst, 0x44, 0x87)
		dst = appendSize(dst, uint64(len(t.Value)), 8)
		dst = append(dst, t.Value...)
	}
	return dst
}

func simpleTagLen(t SimpleTag) int { return 10 + 10 + len(t.Name) + 10 + len(t.Value) }

// WithUnknownSegmentSize returns a copy of a stream header (EBML header,
// Segment, …) whose Segment size is "unknown", so that the header can be
// followed by any number of fragments, as GetMedia does.
func WithUnknownSegmentSize(header []byte) ([]byte, error) {
	id, n, err := readID(header)
	if err != nil || id != IDEBML {
		return nil, fmt.Errorf("%w: header does not start with an EBML header", ErrInvalid)
	}
	size, w, _, err := readVint(header[n:])
	if err != nil || uint64(len(header)) < uint64(n+w)+size {
		return nil, fmt.Errorf("%w: truncated EBML header", ErrInvalid)
	}
	pos := n + w + int(size)
	id, n, err = readID(header[pos:])
	if err != nil || id != IDSegment {
		return nil, fmt.Errorf("%w: no Segment after the EBML header", ErrInvalid)
	}
	_, w, unknown, err := readVint(header[pos+n:])
	if err != nil {
		return nil, fmt.Errorf("%w: Segment size", ErrInvalid)
	}
	out := make([]byte, 0, len(header)+8)
	out = append(out, header[:pos+n]...)
	if unknown {
		out = append(out, header[pos+n:pos+n+w]...)
	} else {
		out = append(out, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	}
	return append(out, header[pos+n+w:]...), nil
}
