// Package media holds the one currency every stage of kvsgo trades in: a
// Frame of one Track. Sources produce frames, the producer fragments them,
// and nothing downstream needs to know where a frame came from.
package media

import "time"

// Kind says whether a track carries video or audio.
type Kind uint8

// Track kinds. The values match Matroska's TrackType.
const (
	KindVideo Kind = 1
	KindAudio Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindVideo:
		return "video"
	case KindAudio:
		return "audio"
	default:
		return "unknown"
	}
}

// Codec IDs as Matroska and Kinesis Video Streams name them.
const (
	CodecH264 = "V_MPEG4/ISO/AVC"
	CodecH265 = "V_MPEGH/ISO/HEVC"
	CodecAAC  = "A_AAC"
)

// Track describes one elementary stream.
type Track struct {
	// Number is the Matroska track number, starting at 1.
	Number uint8
	Kind   Kind
	// CodecID is one of the Codec* constants.
	CodecID string
	// CodecPrivate is the decoder configuration: avcC for H.264, hvcC for
	// H.265, AudioSpecificConfig for AAC.
	CodecPrivate []byte
	// Name is the track name written to the container.
	Name string

	// Video only.
	Width, Height int

	// Audio only.
	SampleRate float64
	Channels   int
}

// Frame is one access unit (video) or one audio frame.
type Frame struct {
	// Track is the Number of the Track this frame belongs to.
	Track uint8
	// PTS is the presentation time, DTS the decoding time, both relative to
	// the origin of the source's clock.
	PTS, DTS time.Duration
	// Key marks a frame a decoder can start from (IDR/IRAP for video).
	Key bool
	// Data is the payload; video in length-prefixed (AVCC/HVCC) form with
	// 4-byte lengths.
	Data []byte
}
