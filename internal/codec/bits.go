package codec

import "errors"

var errShortHeader = errors.New("header truncated")

// bitReader reads an RBSP (a NAL unit payload with emulation prevention
// bytes removed) most significant bit first.
type bitReader struct {
	buf []byte
	pos int
	// nalu is the NAL unit buf was taken from, when a parser needs its
	// header.
	nalu []byte
}

// unescapeRBSP copies at most len(dst) bytes of payload from a NAL unit into
// dst, dropping emulation_prevention_three_bytes, and returns the filled part.
// A fixed dst keeps slice-header parsing free of allocations.
func unescapeRBSP(dst, src []byte) []byte {
	n, zeros := 0, 0
	for _, b := range src {
		if n == len(dst) {
			break
		}
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
		dst[n] = b
		n++
	}
	return dst[:n]
}

func (r *bitReader) bit() (uint32, error) {
	if r.pos >= len(r.buf)*8 {
		return 0, errShortHeader
	}
	b := r.buf[r.pos>>3] >> (7 - uint(r.pos&7)) & 1
	r.pos++
	return uint32(b), nil
}

func (r *bitReader) bits(n int) (uint32, error) {
	var v uint32
	for range n {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

func (r *bitReader) flag() (bool, error) {
	b, err := r.bit()
	return b == 1, err
}

// ue reads an unsigned Exp-Golomb code.
func (r *bitReader) ue() (uint32, error) {
	zeros := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, errors.New("exp-golomb code too long")
		}
	}
	v, err := r.bits(zeros)
	if err != nil {
		return 0, err
	}
	return (1<<zeros - 1) + v, nil
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() (int32, error) {
	v, err := r.ue()
	if err != nil {
		return 0, err
	}
	if v&1 == 1 {
		return int32(v/2) + int32(v&1), nil
	}
	return -int32(v / 2), nil
}
