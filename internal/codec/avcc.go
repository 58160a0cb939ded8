package codec

import (
	"encoding/binary"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// DecoderConfig is the content of an avcC or hvcC record that matters for
// reading frames: the NAL length size and the parameter sets.
type DecoderConfig struct {
	LengthSize int
	VPS        [][]byte // H.265 only
	SPS        [][]byte
	PPS        [][]byte
}

// NALUs returns the parameter sets in decoding order (VPS, SPS, PPS).
func (d DecoderConfig) NALUs() [][]byte {
	out := make([][]byte, 0, len(d.VPS)+len(d.SPS)+len(d.PPS))
	out = append(out, d.VPS...)
	out = append(out, d.SPS...)
	return append(out, d.PPS...)
}

func appendLen16(dst, n []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(n)))
	return append(dst, n...)
}

func buildAVCC(sps []byte, pps [][]byte, s *h264.SPS) ([]byte, error) {
	if len(sps) < 4 || len(sps) > 0xffff {
		return nil, fmt.Errorf("%w: SPS of %d bytes", ErrInvalidNALU, len(sps))
	}
	out := []byte{1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1}
	out = appendLen16(out, sps)
	out = append(out, byte(len(pps)))
	for _, p := range pps {
		if len(p) > 0xffff {
			return nil, fmt.Errorf("%w: PPS of %d bytes", ErrInvalidNALU, len(p))
		}
		out = appendLen16(out, p)
	}
	// ISO/IEC 14496-15 adds chroma and bit depth for the profiles beyond
	// Baseline, Main and Extended.
	switch s.ProfileIdc {
	case 66, 77, 88:
	default:
		out = append(out,
			0xfc|byte(s.ChromaFormatIdc&3),
			0xf8|byte(s.BitDepthLumaMinus8&7),
			0xf8|byte(s.BitDepthChromaMinus8&7),
			0)
	}
	return out, nil
}

// ParseAVCC reads an AVCDecoderConfigurationRecord.
func ParseAVCC(b []byte) (DecoderConfig, error) {
	var d DecoderConfig
	if len(b) < 7 || b[0] != 1 {
		return d, fmt.Errorf("%w: not an avcC record", ErrInvalidNALU)
	}
	d.LengthSize = int(b[4]&3) + 1
	if d.LengthSize == 3 {
		return d, fmt.Errorf("%w: avcC NAL length size 3", ErrInvalidNALU)
	}
	rest := b[5:]
	var err error
	if d.SPS, rest, err = readParamArray(rest, int(rest[0]&0x1f)); err != nil {
		return d, err
	}
	if len(rest) < 1 {
		return d, fmt.Errorf("%w: avcC without PPS count", ErrInvalidNALU)
	}
	if d.PPS, _, err = readParamArray(rest, int(rest[0])); err != nil {
		return d, err
	}
	return d, nil
}

// readParamArray reads count 16-bit-length-prefixed NAL units after a one
// byte count.
func readParamArray(b []byte, count int) ([][]byte, []byte, error) {
	b = b[1:]
	out := make([][]byte, 0, count)
	for range count {
		if len(b) < 2 {
			return nil, nil, fmt.Errorf("%w: truncated parameter set list", ErrInvalidNALU)
		}
		n := int(binary.BigEndian.Uint16(b))
		if n == 0 || len(b) < 2+n {
			return nil, nil, fmt.Errorf("%w: parameter set of %d bytes with %d left", ErrInvalidNALU, n, len(b)-2)
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, b, nil
}
