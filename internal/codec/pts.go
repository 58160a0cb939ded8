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
// pictures, H.264 recovery-point I-frames, with leading pictures) keep
// counting across the key picture, as the POC does.
//
// As long as every picture's POC distance matches its decoding distance (no
// reordering: most cameras), the presentation time is the decoding time, so
// a frame interval that is only an estimate cannot make timestamps drift.
//
// A picture that resets the POC and may have leading pictures (H.265
// IDR_W_RADL, BLA with leading pictures, or a stream that starts at a CRA or
// an H.264 recovery point) is shown after those leading pictures, which
// come after it in decoding order: how many is not known when it arrives.
// Its time is therefore placed after the previous pictures plus room for as
// many leading pictures as the last such picture had (at first, as many as
// the SPS allows to be reordered), so that no two pictures share a time and
// the presentation order is the POC order.
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

	maxPTS  time.Duration // latest presentation time given so far
	havePTS bool

	// Leading pictures after a POC reset that allows them: counted until
	// the first picture after the anchor in output order, then kept as the
	// guess for the next such reset (-1 while none was counted).
	leadGuess  int32
	leadKnown  bool
	counting   bool
	minLeadPOC int32

	// H.264 pic_order_cnt_type 1 state (8.2.1.2).
	prevFrameNum, prevFrameNumOffset int32
}

// PTS returns the presentation time of au, which is decoded at dts; frame
// is the duration of one frame. params must have seen the stream's SPS (and
// for H.265 its PPS).
func (d *PTSDeriver) PTS(au [][]byte, dts, frame time.Duration, params *Params) (time.Duration, error) {
	pts, err := d.pts(au, dts, frame, params)
	if err == nil {
		if !d.havePTS || pts > d.maxPTS {
			d.maxPTS = pts
		}
		d.havePTS = true
	}
	return pts, err
}

func (d *PTSDeriver) pts(au [][]byte, dts, frame time.Duration, params *Params) (time.Duration, error) {
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
		poc     int32
		reset   bool
		leading bool // a reset picture that may have leading pictures
		err     error
	)
	if d.Codec == H265 {
		poc, reset, leading, err = d.h265POC(slice, params)
	} else {
		switch params.h264SPS.PicOrderCntType {
		case 0:
			poc, reset, err = d.h264POC(slice, params)
		case 1:
			poc, reset, err = d.h264POCType1(slice, params)
		default:
			// Type 2: output order is decoding order.
			return dts, nil
		}
		// A stream that starts at a recovery-point I-frame (open GOP) has
		// leading pictures, as a CRA does.
		leading = !d.anchored && !reset
		reset = reset || !d.anchored
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
	if d.counting && !reset {
		if poc < d.anchorPOC {
			d.minLeadPOC = min(d.minLeadPOC, poc)
		} else {
			// The first picture after the anchor in output order ends its
			// leading pictures.
			d.leadGuess, d.leadKnown = (d.anchorPOC-d.minLeadPOC)/d.step, true
			d.counting = false
		}
	}
	if reset {
		base := dts
		if d.reordered && d.havePTS {
			base = max(dts, d.maxPTS+frame)
		}
		if leading {
			n := d.leadGuess
			if !d.leadKnown {
				n = params.maxReorder()
			}
			if n > 0 {
				base += time.Duration(n) * frame
				d.reordered = true // presentation follows the POC from here
			}
			d.counting, d.minLeadPOC = true, poc
		} else {
			d.counting = false
		}
		d.anchorPOC, d.anchorPTS, d.anchored, d.decoded = poc, base, true, 0
		return base, nil
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

// h264SliceStart reads an H.264 slice header up to and including
// idr_pic_id, leaving br at pic_order_cnt_lsb / delta_pic_order_cnt.
func (d *PTSDeriver) h264SliceStart(br *bitReader, p *Params) (frameNum int32, idr bool, err error) {
	s := &p.h264SPS
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
	fn, err := br.bits(int(s.Log2MaxFrameNumMinus4) + 4)
	if err != nil {
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
	idr = d.Codec.NALUType(br.nalu) == h264IDR
	if idr {
		if _, err = br.ue(); err != nil { // idr_pic_id
			return 0, false, err
		}
	}
	return int32(fn), idr, nil
}

// h264POC computes TopFieldOrderCnt for pic_order_cnt_type 0 (H.264 8.2.1.1).
func (d *PTSDeriver) h264POC(nalu []byte, p *Params) (poc int32, reset bool, err error) {
	s := &p.h264SPS
	var tmp [32]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[1:]), nalu: nalu}
	_, idr, err := d.h264SliceStart(&br, p)
	if err != nil {
		return 0, false, err
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

// h264POCType1 computes TopFieldOrderCnt for pic_order_cnt_type 1 (H.264
// 8.2.1.2): the order is predicted from frame_num and the SPS's cycle of
// offsets, corrected by delta_pic_order_cnt[0].
func (d *PTSDeriver) h264POCType1(nalu []byte, p *Params) (poc int32, reset bool, err error) {
	s := &p.h264SPS
	var tmp [32]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[1:]), nalu: nalu}
	frameNum, idr, err := d.h264SliceStart(&br, p)
	if err != nil {
		return 0, false, err
	}
	var delta int32
	if !s.DeltaPicOrderAlwaysZeroFlag {
		if delta, err = br.se(); err != nil {
			return 0, false, err
		}
	}
	maxFrameNum := int32(1) << (s.Log2MaxFrameNumMinus4 + 4)
	offset := d.prevFrameNumOffset
	switch {
	case idr:
		offset = 0
	case d.prevFrameNum > frameNum:
		offset += maxFrameNum
	}
	d.prevFrameNum, d.prevFrameNumOffset = frameNum, offset
	cycle := int32(len(s.OffsetForRefFrames))
	ref := nalu[0]&0x60 != 0
	absFrameNum := int32(0)
	if cycle != 0 {
		absFrameNum = offset + frameNum
	}
	if !ref && absFrameNum > 0 {
		absFrameNum--
	}
	var expected int32
	if absFrameNum > 0 {
		var perCycle int32
		for _, o := range s.OffsetForRefFrames {
			perCycle += o
		}
		expected = (absFrameNum - 1) / cycle * perCycle
		for _, o := range s.OffsetForRefFrames[:(absFrameNum-1)%cycle+1] {
			expected += o
		}
	}
	if !ref {
		expected += s.OffsetForNonRefPic
	}
	return expected + delta, idr, nil
}

// h265POC computes PicOrderCntVal (H.265 8.3.1).
//
// reset reports a picture that restarts the POC (IDR, BLA, a CRA that starts
// the stream); leading that such a picture may have leading pictures.
func (d *PTSDeriver) h265POC(nalu []byte, p *Params) (poc int32, reset, leading bool, err error) {
	if len(nalu) < 3 {
		return 0, false, false, errShortHeader
	}
	t := d.Codec.NALUType(nalu)
	if t == h265IDRWRADL || t == h265IDRNLP {
		d.prevMsb, d.prevLsb = 0, 0
		return 0, true, t == h265IDRWRADL, nil
	}
	s, pps := &p.h265SPS, &p.h265PPS
	var tmp [32]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[2:])}
	first, err := br.flag()
	if err != nil {
		return 0, false, false, err
	}
	if !first {
		return 0, false, false, fmt.Errorf("%w: access unit starts with a dependent slice segment", ErrNoPOC)
	}
	irap := t >= h265BLAWLP && t <= h265IRAPMax
	if irap {
		if _, err = br.bit(); err != nil { // no_output_of_prior_pics_flag
			return 0, false, false, err
		}
	}
	if _, err = br.ue(); err != nil { // slice_pic_parameter_set_id
		return 0, false, false, err
	}
	if _, err = br.bits(int(pps.NumExtraSliceHeaderBits)); err != nil {
		return 0, false, false, err
	}
	if _, err = br.ue(); err != nil { // slice_type
		return 0, false, false, err
	}
	if pps.OutputFlagPresentFlag {
		if _, err = br.bit(); err != nil {
			return 0, false, false, err
		}
	}
	if s.SeparateColourPlaneFlag {
		if _, err = br.bits(2); err != nil {
			return 0, false, false, err
		}
	}
	lsbBits := int(s.Log2MaxPicOrderCntLsbMinus4) + 4
	v, err := br.bits(lsbBits)
	if err != nil {
		return 0, false, false, err
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
	// BLA_N_LP (18) has no leading pictures; a CRA may have.
	return msb + lsb, reset, reset && t != h265BLAWLP+2, nil
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
