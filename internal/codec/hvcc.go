package codec

import (
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

func buildHVCC(vps, sps []byte, pps [][]byte, s *h265.SPS) ([]byte, error) {
	// The general profile_tier_level is 12 bytes right after the first
	// byte of the SPS payload; copying them keeps every flag as coded.
	var tmp [16]byte
	if len(sps) < 3 {
		return nil, fmt.Errorf("%w: SPS of %d bytes", ErrInvalidNALU, len(sps))
	}
	rbsp := unescapeRBSP(tmp[:], sps[2:])
	if len(rbsp) < 13 {
		return nil, fmt.Errorf("%w: SPS too short for profile_tier_level", ErrInvalidNALU)
	}
	ptl := rbsp[1:13]
	numTemporalLayers := s.MaxSubLayersMinus1 + 1
	nested := byte(0)
	if s.TemporalIDNestingFlag {
		nested = 1
	}
	out := make([]byte, 0, 23+3*5+len(vps)+len(sps)+len(pps)*16)
	out = append(out, 1)
	out = append(out, ptl...) // profile space/tier/idc, compat flags, constraint flags, level
	out = append(out,
		0xf0, 0x00, // min_spatial_segmentation_idc
		0xfc,                           // parallelismType unknown
		0xfc|byte(s.ChromaFormatIdc&3), // chroma_format_idc
		0xf8|byte(s.BitDepthLumaMinus8&7),
		0xf8|byte(s.BitDepthChromaMinus8&7),
		0, 0, // avgFrameRate unknown
		numTemporalLayers<<3|nested<<2|3, // constantFrameRate 0, lengthSizeMinusOne 3
		3)                                // arrays: VPS, SPS, PPS
	for _, arr := range []struct {
		typ   byte
		nalus [][]byte
	}{{h265VPS, [][]byte{vps}}, {h265SPS, [][]byte{sps}}, {h265PPS, pps}} {
		// array_completeness 0: the parameter sets also travel in-band.
		out = append(out, arr.typ, 0, byte(len(arr.nalus)))
		for _, n := range arr.nalus {
			if len(n) > 0xffff {
				return nil, fmt.Errorf("%w: parameter set of %d bytes", ErrInvalidNALU, len(n))
			}
			out = appendLen16(out, n)
		}
	}
	return out, nil
}

// ParseHVCC reads an HEVCDecoderConfigurationRecord.
func ParseHVCC(b []byte) (DecoderConfig, error) {
	var d DecoderConfig
	if len(b) < 23 || b[0] != 1 {
		return d, fmt.Errorf("%w: not an hvcC record", ErrInvalidNALU)
	}
	d.LengthSize = int(b[21]&3) + 1
	if d.LengthSize == 3 {
		return d, fmt.Errorf("%w: hvcC NAL length size 3", ErrInvalidNALU)
	}
	arrays := int(b[22])
	rest := b[23:]
	for range arrays {
		if len(rest) < 3 {
			return d, fmt.Errorf("%w: truncated hvcC array", ErrInvalidNALU)
		}
		typ := rest[0] & 0x3f
		count := int(rest[1])<<8 | int(rest[2])
		nalus, r, err := readParamArray(rest[2:], count)
		if err != nil {
			return d, err
		}
		rest = r
		switch typ {
		case h265VPS:
			d.VPS = append(d.VPS, nalus...)
		case h265SPS:
			d.SPS = append(d.SPS, nalus...)
		case h265PPS:
			d.PPS = append(d.PPS, nalus...)
		}
	}
	return d, nil
}
