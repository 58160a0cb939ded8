package codec

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoPOC means a stream's picture order count could not be read; callers
// fall back to presentation time = decoding time.
var ErrNoPOC = errors.New("picture order count not available")

// PTSDeriver gives presentation timestamps to access units that arrive in
// decoding order without them, as raw Annex-B from an encoder does. With
// B-frames, pictures are presented in picture order count (POC) order, so a
// picture's presentation time is the time of the picture that last reset
// the POC plus its POC distance from it, in frames. Open GOPs (H.265 CRA
// pictures with leading pictures) keep counting across the CRA, as the POC
// does.
//
// As long as every picture's POC distance matches its decoding distance (no
// reordering: most cameras), the presentation time is the decoding time, so
// a frame interval that is only an estimate cannot make timestamps drift.
//
// The POC step between consecutive frames is not signalled: x264 counts in
// twos, x265 in ones. The deriver starts from the usual step of each codec
// and narrows it to the greatest common divisor of the distances it sees.
type PTSDeriver struct {
	Codec Codec

	prevMsb, prevLsb int32 // POC state of the previous reference picture
	anchorPOC        int32 // POC of the picture that last reset the POC
	anchorPTS        time.Duration
	decoded          int32 // pictures decoded since the anchor
	step             int32
	anchored         bool
	reordered        bool // pictures have been seen out of order
}

// PTS returns the presentation time of au, which is decoded at dts; frame
// is the duration of one frame. params must have seen the stream's SPS (and
// for H.265 its PPS).
func (d *PTSDeriver) PTS(au [][]byte, dts, frame time.Duration, params *Params) (time.Duration, error) {
	var slice []byte
	for _, n := range au {
		if d.Codec.isVCL(n) {
			slice = n
			break
		}
	}
	if slice == nil {
		return dts, fmt.Errorf("%w: access unit without a picture", ErrNoPOC)
	}
	if params.sps == nil {
		return dts, ErrNoParamSets
	}
	var (
		poc   int32
		reset bool
		err   error
	)
	if d.Codec == H265 {
		poc, reset, err = d.h265POC(slice, params)
	} else {
		if params.h264SPS.PicOrderCntType != 0 {
			// Type 2 means output order is decoding order; type 1 (rare)
			// is treated the same.
			return dts, nil
		}
		poc, reset, err = d.h264POC(slice, params)
	}
	if err != nil {
		return dts, err
	}
	if d.step == 0 {
		d.step = 2
		if d.Codec == H265 {
			d.step = 1
		}
	}
	if reset || !d.anchored {
		d.anchorPOC, d.anchorPTS, d.anchored, d.decoded = poc, dts, true, 0
		return dts, nil
	}
	d.decoded++
	diff := poc - d.anchorPOC
	if diff%d.step != 0 {
		d.step = gcd(d.step, abs32(diff))
	}
	if !d.reordered && diff/d.step == d.decoded {
		return dts, nil
	}
	d.reordered = true // from here on, presentation follows the POC
	return d.anchorPTS + time.Duration(diff/d.step)*frame, nil
}

// h264POC computes TopFieldOrderCnt for pic_order_cnt_type 0 (H.264 8.2.1.1).
func (d *PTSDeriver) h264POC(nalu []byte, p *Params) (poc int32, reset bool, err error) {
	s := &p.h264SPS
	var tmp [32]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[1:])}
	idr := d.Codec.NALUType(nalu) == h264IDR
	if _, err = br.ue(); err != nil { // first_mb_in_slice
		return 0, false, err
	}
	if _, err = br.ue(); err != nil { // slice_type
		return 0, false, err
	}
	if _, err = br.ue(); err != nil { // pic_parameter_set_id
		return 0, false, err
	}
	if s.SeparateColourPlaneFlag {
		if _, err = br.bits(2); err != nil {
			return 0, false, err
		}
	}
	if _, err = br.bits(int(s.Log2MaxFrameNumMinus4) + 4); err != nil { // frame_num
		return 0, false, err
	}
	if !s.FrameMbsOnlyFlag {
		field, err := br.flag()
		if err != nil {
			return 0, false, err
		}
		if field {
			if _, err = br.bit(); err != nil {
				return 0, false, err
			}
		}
	}
	if idr {
		if _, err = br.ue(); err != nil { // idr_pic_id
			return 0, false, err
		}
	}
	lsbBits := int(s.Log2MaxPicOrderCntLsbMinus4) + 4
	v, err := br.bits(lsbBits)
	if err != nil {
		return 0, false, err
	}
	lsb := int32(v)
	if idr {
		d.prevMsb, d.prevLsb = 0, 0
	}
	msb := pocMsb(d.prevMsb, d.prevLsb, lsb, int32(1)<<lsbBits)
	if nalu[0]&0x60 != 0 { // nal_ref_idc: a reference picture
		d.prevMsb, d.prevLsb = msb, lsb
	}
	return msb + lsb, idr, nil
}

// h265POC computes PicOrderCntVal (H.265 8.3.1).
func (d *PTSDeriver) h265POC(nalu []byte, p *Params) (poc int32, reset bool, err error) {
	if len(nalu) < 3 {
		return 0, false, errShortHeader
	}
	t := d.Codec.NALUType(nalu)
	if t == h265IDRWRADL || t == h265IDRNLP {
		d.prevMsb, d.prevLsb = 0, 0
		return 0, true, nil
	}
	s, pps := &p.h265SPS, &p.h265PPS
	var tmp [32]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[2:])}
	first, err := br.flag()
	if err != nil {
		return 0, false, err
	}
	if !first {
		return 0, false, fmt.Errorf("%w: access unit starts with a dependent slice segment", ErrNoPOC)
	}
	irap := t >= h265BLAWLP && t <= h265IRAPMax
	if irap {
		if _, err = br.bit(); err != nil { // no_output_of_prior_pics_flag
			return 0, false, err
		}
	}
	if _, err = br.ue(); err != nil { // slice_pic_parameter_set_id
		return 0, false, err
	}
	if _, err = br.bits(int(pps.NumExtraSliceHeaderBits)); err != nil {
		return 0, false, err
	}
	if _, err = br.ue(); err != nil { // slice_type
		return 0, false, err
	}
	if pps.OutputFlagPresentFlag {
		if _, err = br.bit(); err != nil {
			return 0, false, err
		}
	}
	if s.SeparateColourPlaneFlag {
		if _, err = br.bits(2); err != nil {
			return 0, false, err
		}
	}
	lsbBits := int(s.Log2MaxPicOrderCntLsbMinus4) + 4
	v, err := br.bits(lsbBits)
	if err != nil {
		return 0, false, err
	}
	lsb := int32(v)
	// BLA pictures, and a CRA that starts decoding, restart the POC MSB.
	reset = (t < h265CRA && irap) || (t == h265CRA && !d.anchored)
	msb := int32(0)
	if !reset {
		msb = pocMsb(d.prevMsb, d.prevLsb, lsb, int32(1)<<lsbBits)
	}
	temporalID := int(nalu[1]&7) - 1
	subLayerNonRef := t <= 14 && t%2 == 0
	radlOrRasl := t >= 6 && t <= h265RASLR
	if temporalID == 0 && !subLayerNonRef && !radlOrRasl {
		d.prevMsb, d.prevLsb = msb, lsb
	}
	return msb + lsb, reset, nil
}

// pocMsb derives the POC most significant part from the previous reference
// picture (H.264 8-3, H.265 8-1).
func pocMsb(prevMsb, prevLsb, lsb, maxLsb int32) int32 {
	switch {
	case lsb < prevLsb && prevLsb-lsb >= maxLsb/2:
		return prevMsb + maxLsb
	case lsb > prevLsb && lsb-prevLsb > maxLsb/2:
		return prevMsb - maxLsb
	}
	return prevMsb
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return max(a, 1)
}

func abs32(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}
