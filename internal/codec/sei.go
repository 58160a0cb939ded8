package codec

// H.264 SEI payload types used here (ITU-T H.264 Annex D).
const h264SEIRecoveryPoint = 6

// rbspReader reads the bytes of a NAL unit payload as its RBSP, skipping
// emulation_prevention_three_bytes as it goes, so that a long SEI needs no
// copy.
type rbspReader struct {
	buf   []byte
	pos   int
	zeros int
}

func (r *rbspReader) more() bool {
	r.skipEscape()
	return r.pos < len(r.buf)
}

func (r *rbspReader) skipEscape() {
	if r.zeros >= 2 && r.pos < len(r.buf) && r.buf[r.pos] == 3 {
		r.pos++
		r.zeros = 0
	}
}

func (r *rbspReader) byte() (byte, bool) {
	r.skipEscape()
	if r.pos >= len(r.buf) {
		return 0, false
	}
	b := r.buf[r.pos]
	r.pos++
	if b == 0 {
		r.zeros++
	} else {
		r.zeros = 0
	}
	return b, true
}

// seiValue reads one of the 0xFF-extended numbers an SEI message starts
// with (payload type, payload size).
func (r *rbspReader) seiValue() (int, bool) {
	v := 0
	for {
		b, ok := r.byte()
		if !ok || v > 1<<20 {
			return 0, false
		}
		v += int(b)
		if b != 0xff {
			return v, true
		}
	}
}

// h264RecoveryPoint reports whether an H.264 SEI NAL unit holds a recovery
// point whose recovery_frame_cnt is 0: decoding can start at this picture
// and every picture from it on in output order is correct. x264 marks the
// I-frames of an open GOP this way (no IDR after the first); intra-refresh
// streams carry a count > 0 and are not random access points picture by
// picture.
func h264RecoveryPoint(nalu []byte) bool {
	r := rbspReader{buf: nalu[1:]}
	for r.more() {
		if r.buf[r.pos] == 0x80 && r.pos == len(r.buf)-1 {
			return false // rbsp_trailing_bits
		}
		typ, ok := r.seiValue()
		if !ok {
			return false
		}
		size, ok := r.seiValue()
		if !ok {
			return false
		}
		if typ == h264SEIRecoveryPoint {
			var tmp [8]byte
			n := 0
			for n < len(tmp) && n < size {
				c, ok := r.byte()
				if !ok {
					break
				}
				tmp[n] = c
				n++
			}
			br := bitReader{buf: tmp[:n]}
			cnt, err := br.ue()
			return err == nil && cnt == 0
		}
		for range size {
			if _, ok := r.byte(); !ok {
				return false
			}
		}
	}
	return false
}

// h264IntraSlice reports whether a slice NAL unit holds an I (or SI) slice.
func h264IntraSlice(nalu []byte) bool {
	var tmp [8]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], nalu[1:])}
	if _, err := br.ue(); err != nil { // first_mb_in_slice
		return false
	}
	st, err := br.ue()
	if err != nil {
		return false
	}
	return st%5 == 2 || st%5 == 4 // I or SI
}
