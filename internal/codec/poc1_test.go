package codec

import (
	"testing"
	"time"
)

// bitWriter builds test bitstreams (no emulation prevention: the values
// written here never form 00 00 0x).
type bitWriter struct {
	buf  []byte
	nbit int
}

func (w *bitWriter) bit(b uint32) {
	if w.nbit%8 == 0 {
		w.buf = append(w.buf, 0)
	}
	if b != 0 {
		w.buf[len(w.buf)-1] |= 0x80 >> (w.nbit % 8)
	}
	w.nbit++
}

func (w *bitWriter) bits(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> i & 1)
	}
}

func (w *bitWriter) ue(v uint32) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(v, n+1)
}

func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*v - 1))
	} else {
		w.ue(uint32(-2 * v))
	}
}

// trailing ends the RBSP and adds padding bytes so that parsers never
// run short.
func (w *bitWriter) trailing() []byte {
	w.bit(1)
	for w.nbit%8 != 0 {
		w.bit(0)
	}
	return append(w.buf, 0x55, 0x55, 0x55, 0x55)
}

// pocType1SPS is a Main profile 320x240 SPS with pic_order_cnt_type 1:
// reference frames two POC units apart per frame of a three-frame cycle
// (I/P every third picture), non-reference pictures 4 before the next
// reference picture, and MaxFrameNum 16 so that frame_num wraps.
func pocType1SPS() []byte {
	w := &bitWriter{buf: []byte{0x67, 77, 0, 30}, nbit: 32}
	w.ue(0)  // seq_parameter_set_id
	w.ue(0)  // log2_max_frame_num_minus4
	w.ue(1)  // pic_order_cnt_type
	w.bit(0) // delta_pic_order_always_zero_flag
	w.se(-4) // offset_for_non_ref_pic
	w.se(0)  // offset_for_top_to_bottom_field
	w.ue(1)  // num_ref_frames_in_pic_order_cnt_cycle
	w.se(6)  // offset_for_ref_frame[0]
	w.ue(2)  // max_num_ref_frames
	w.bit(0) // gaps_in_frame_num_value_allowed_flag
	w.ue(19) // pic_width_in_mbs_minus1
	w.ue(14) // pic_height_in_map_units_minus1
	w.bit(1) // frame_mbs_only_flag
	w.bit(1) // direct_8x8_inference_flag
	w.bit(0) // frame_cropping_flag
	w.bit(0) // vui_parameters_present_flag
	return w.trailing()
}

func pocType1Slice(idr, ref bool, frameNum uint32, delta int32) []byte {
	hdr := byte(0x01)
	switch {
	case idr:
		hdr = 0x65
	case ref:
		hdr = 0x41
	}
	w := &bitWriter{buf: []byte{hdr}, nbit: 8}
	w.ue(0) // first_mb_in_slice
	w.ue(5) // slice_type
	w.ue(0) // pic_parameter_set_id
	w.bits(frameNum%16, 4)
	if idr {
		w.ue(0) // idr_pic_id
	}
	w.se(delta) // delta_pic_order_cnt[0]
	return w.trailing()
}

// TestPTSFromPOCType1: H.264 pic_order_cnt_type 1 (the order predicted
// from frame_num) gives the presentation order of an I P B B stream,
// across frame_num wrapping and a second IDR.
func TestPTSFromPOCType1(t *testing.T) {
	const frame = time.Second / 30
	p := &Params{Codec: H264}
	if _, err := p.Update([][]byte{pocType1SPS()}); err != nil {
		t.Fatal(err)
	}
	if p.h264SPS.PicOrderCntType != 1 {
		t.Fatalf("SPS read as POC type %d", p.h264SPS.PicOrderCntType)
	}
	type pic struct {
		idr, ref bool
		delta    int32
		display  int // frames after the anchor IDR in output order
	}
	// Decoding order I0 P3 B1 B2 P6 B4 B5 …: frame_num counts reference
	// pictures; the two B-frames between share one.
	var pics []pic
	var frameNums []uint32
	emit := func(gop int) {
		pics = append(pics, pic{idr: true, ref: true})
		frameNums = append(frameNums, 0)
		fn := uint32(1)
		for i := range gop {
			p := 3*i + 3
			pics = append(pics, pic{ref: true, display: p})
			frameNums = append(frameNums, fn)
			fn++
			pics = append(pics, pic{display: p - 2}, pic{delta: 2, display: p - 1})
			frameNums = append(frameNums, fn, fn)
		}
	}
	emit(20) // frame_num wraps past 16
	first := len(pics)
	emit(3)
	d := &PTSDeriver{Codec: H264}
	anchor := 0
	for i, pc := range pics {
		if i == first {
			anchor = i // the second IDR restarts the count after the first GOP
		}
		dts := time.Duration(i) * frame
		got, err := d.PTS([][]byte{pocType1Slice(pc.idr, pc.ref, frameNums[i], pc.delta)}, dts, frame, p)
		if err != nil {
			t.Fatalf("picture %d: %v", i, err)
		}
		want := time.Duration(anchor+pc.display) * frame
		if got != want {
			t.Fatalf("picture %d (display %d): pts %v, want %v", i, pc.display, got, want)
		}
	}
}
