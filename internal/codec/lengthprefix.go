package codec

import (
	"encoding/binary"
	"fmt"
)

// AppendLengthPrefixed appends NAL units in the length-prefixed form that
// Matroska and MP4 carry (AVCC/HVCC, 4-byte big-endian lengths). Access unit
// delimiters are dropped: they mean nothing outside a byte stream.
func (c Codec) AppendLengthPrefixed(dst []byte, nalus [][]byte) []byte {
	for _, n := range nalus {
		t := c.NALUType(n)
		if (c == H264 && t == h264AUD) || (c == H265 && t == h265AUD) {
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(n)))
		dst = append(dst, n...)
	}
	return dst
}

// SplitLengthPrefixed appends the NAL units of a length-prefixed access
// unit to dst. lengthSize is 1, 2 or 4 (from avcC/hvcC).
func SplitLengthPrefixed(dst [][]byte, au []byte, lengthSize int) ([][]byte, error) {
	if lengthSize != 1 && lengthSize != 2 && lengthSize != 4 {
		return dst, fmt.Errorf("%w: NAL length size %d", ErrInvalidNALU, lengthSize)
	}
	for len(au) > 0 {
		if len(au) < lengthSize {
			return dst, fmt.Errorf("%w: truncated NAL length", ErrInvalidNALU)
		}
		var n uint64
		for _, b := range au[:lengthSize] {
			n = n<<8 | uint64(b)
		}
		au = au[lengthSize:]
		if n == 0 || n > uint64(len(au)) {
			return dst, fmt.Errorf("%w: NAL length %d with %d bytes left", ErrInvalidNALU, n, len(au))
		}
		dst = append(dst, au[:n])
		au = au[n:]
	}
	return dst, nil
}
