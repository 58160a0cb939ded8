// Package codec holds what kvsgo needs to know about H.264 and H.265
// bitstreams: splitting Annex-B byte streams into access units, tracking
// parameter sets, building avcC/hvcC decoder configuration records, reading
// picture size and frame rate from the SPS, and deriving presentation
// timestamps from the picture order count.
package codec

import (
	"errors"
	"fmt"
)

// Codec is a video coding format.
type Codec uint8

// Supported codecs.
const (
	H264 Codec = iota + 1
	H265
)

func (c Codec) String() string {
	switch c {
	case H264:
		return "H.264"
	case H265:
		return "H.265"
	default:
		return fmt.Sprintf("codec(%d)", uint8(c))
	}
}

// Errors callers can test for.
var (
	ErrNALUTooLarge   = errors.New("NAL unit larger than the limit")
	ErrNoParamSets    = errors.New("parameter sets (SPS/PPS) not seen yet")
	ErrInvalidNALU    = errors.New("invalid NAL unit")
	ErrUnsupportedSPS = errors.New("unsupported sequence parameter set")
)

// H.264 NAL unit types (ITU-T H.264 table 7-1) used here.
const (
	h264NonIDR = 1
	h264IDR    = 5
	h264SEI    = 6
	h264SPS    = 7
	h264PPS    = 8
	h264AUD    = 9
)

// H.265 NAL unit types (ITU-T H.265 table 7-1) used here.
const (
	h265RASLR     = 9
	h265BLAWLP    = 16
	h265IDRWRADL  = 19
	h265IDRNLP    = 20
	h265CRA       = 21
	h265IRAPMax   = 23
	h265VPS       = 32
	h265SPS       = 33
	h265PPS       = 34
	h265AUD       = 35
	h265PrefixSEI = 39
)

// NALUType returns the nal_unit_type of a NAL unit (without start code).
func (c Codec) NALUType(nalu []byte) uint8 {
	if len(nalu) == 0 {
		return 0
	}
	if c == H265 {
		return (nalu[0] >> 1) & 0x3f
	}
	return nalu[0] & 0x1f
}

// isVCL reports whether the NAL unit carries slice data.
func (c Codec) isVCL(nalu []byte) bool {
	t := c.NALUType(nalu)
	if c == H265 {
		return t < 32
	}
	return t >= 1 && t <= 5
}

// isKeyNALU reports whether the NAL unit starts a picture a decoder can begin
// with: IDR for H.264, IRAP (BLA, IDR, CRA) for H.265.
func (c Codec) isKeyNALU(nalu []byte) bool {
	t := c.NALUType(nalu)
	if c == H265 {
		return t >= h265BLAWLP && t <= h265IRAPMax
	}
	return t == h264IDR
}

// IsKey reports whether an access unit is a random access point: IDR for
// H.264, and an I-frame with a recovery point SEI (recovery_frame_cnt 0), as
// the I-frames of an open GOP are; IRAP (BLA, IDR, CRA) for H.265.
func (c Codec) IsKey(au [][]byte) bool {
	recovery := false
	for _, n := range au {
		if c.isKeyNALU(n) {
			return true
		}
		if c != H264 || len(n) < 2 {
			continue
		}
		switch c.NALUType(n) {
		case h264SEI:
			recovery = recovery || h264RecoveryPoint(n)
		case h264NonIDR:
			// The SEI comes before the picture's first slice.
			return recovery && h264IntraSlice(n)
		}
	}
	return false
}

// startsAccessUnit reports whether a NAL unit must begin a new access unit
// when the current one already holds a picture (H.264 7.4.1.2.3, H.265
// 7.4.2.4.4).
func (c Codec) startsAccessUnit(nalu []byte) bool {
	t := c.NALUType(nalu)
	if c == H265 {
		switch {
		case t < 32: // VCL: first_slice_segment_in_pic_flag
			return len(nalu) > 2 && nalu[2]&0x80 != 0
		case t >= h265VPS && t <= h265AUD, t == h265PrefixSEI, t >= 41 && t <= 44, t >= 48 && t <= 55:
			return true
		}
		return false
	}
	switch {
	case t == h264NonIDR || t == h264IDR: // first_mb_in_slice == 0
		return len(nalu) > 1 && nalu[1]&0x80 != 0
	case t >= h264SEI && t <= h264AUD, t >= 14 && t <= 18:
		return true
	}
	return false
}
