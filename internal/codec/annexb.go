package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxAccessUnit bounds one access unit (and so one NAL unit). A
// 4K intra frame at very high quality stays well below it.
const DefaultMaxAccessUnit = 16 << 20

const readChunk = 64 << 10

var startCode = []byte{0, 0, 1}

// AnnexBReader reads access units from an Annex-B byte stream (NAL units
// separated by 3- or 4-byte start codes) delivered in reads of any size.
// It groups NAL units into access units by the rules of the standards: a new
// access unit begins at an AUD, a parameter set, an SEI or the first slice of
// a new picture. Memory stays bounded by MaxAccessUnit.
//
// An access unit is only known to be complete when the first NAL unit of
// the next one arrives, so each access unit is returned one NAL unit late;
// at the end of the input the last one is returned as it is.
type AnnexBReader struct {
	// MaxAccessUnit bounds the bytes of one access unit;
	// DefaultMaxAccessUnit when zero.
	MaxAccessUnit int

	r     io.Reader
	codec Codec

	buf      []byte // input not yet handed out; NAL being scanned at nalStart
	nalStart int    // -1 until the first start code
	scan     int    // where the next start-code search begins
	eof      bool

	held   []byte // first NAL unit of the next access unit
	arena  []byte // bytes of the current access unit's NAL units
	bounds []int  // NAL unit boundaries in arena
	au     [][]byte
}

// NewAnnexBReader returns a reader of c-coded access units from r.
func NewAnnexBReader(r io.Reader, c Codec) *AnnexBReader {
	return &AnnexBReader{r: r, codec: c, nalStart: -1}
}

func (r *AnnexBReader) maxAU() int {
	if r.MaxAccessUnit > 0 {
		return r.MaxAccessUnit
	}
	return DefaultMaxAccessUnit
}

// ReadAccessUnit returns the next access unit as NAL units without start
// codes. The slices stay valid until the next call. It returns io.EOF after
// the last access unit.
func (r *AnnexBReader) ReadAccessUnit() ([][]byte, error) {
	r.arena = r.arena[:0]
	r.bounds = r.bounds[:0]
	hasVCL := false
	if len(r.held) > 0 {
		r.push(r.held)
		hasVCL = r.codec.isVCL(r.held)
		r.held = r.held[:0]
	}
	for {
		nalu, err := r.nextNALU()
		if errors.Is(err, io.EOF) {
			if len(r.bounds) > 0 {
				return r.build(), nil
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if hasVCL && r.codec.startsAccessUnit(nalu) {
			r.held = append(r.held[:0], nalu...)
			return r.build(), nil
		}
		if len(r.arena)+len(nalu) > r.maxAU() {
			return nil, fmt.Errorf("%w: access unit over %d bytes (is this really %s Annex-B?)", ErrNALUTooLarge, r.maxAU(), r.codec)
		}
		r.push(nalu)
		if r.codec.isVCL(nalu) {
			hasVCL = true
		}
	}
}

func (r *AnnexBReader) push(nalu []byte) {
	r.arena = append(r.arena, nalu...)
	r.bounds = append(r.bounds, len(r.arena))
}

func (r *AnnexBReader) build() [][]byte {
	r.au = r.au[:0]
	start := 0
	for _, end := range r.bounds {
		r.au = append(r.au, r.arena[start:end:end])
		start = end
	}
	return r.au
}

// nextNALU returns the next non-empty NAL unit; the slice is valid until the
// next call.
func (r *AnnexBReader) nextNALU() ([]byte, error) {
	for {
		if r.nalStart < 0 {
			if i := bytes.Index(r.buf[r.scan:], startCode); i >= 0 {
				r.nalStart = r.scan + i + 3
				r.scan = r.nalStart
				continue
			}
		} else if i := bytes.Index(r.buf[r.scan:], startCode); i >= 0 {
			end := r.scan + i
			nalu := trimZeros(r.buf[r.nalStart:end])
			r.nalStart = end + 3
			r.scan = r.nalStart
			if len(nalu) > 0 {
				return nalu, nil
			}
			continue
		}
		if r.eof {
			if r.nalStart < 0 {
				return nil, io.EOF
			}
			nalu := trimZeros(r.buf[r.nalStart:])
			r.nalStart = -1
			r.buf = r.buf[:0]
			r.scan = 0
			if len(nalu) > 0 {
				return nalu, nil
			}
			return nil, io.EOF
		}
		// A start code may straddle the end of the buffer: rescan its last two bytes.
		r.scan = max(len(r.buf)-2, 0)
		if r.nalStart >= 0 {
			r.scan = max(r.scan, r.nalStart)
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

// fill drops consumed input and reads more.
func (r *AnnexBReader) fill() error {
	keep := 0
	if r.nalStart >= 0 {
		keep = r.nalStart
	} else {
		keep = r.scan // junk before the first start code can go
	}
	if keep > 0 {
		n := copy(r.buf, r.buf[keep:])
		r.buf = r.buf[:n]
		r.scan -= keep
		if r.nalStart >= 0 {
			r.nalStart = 0
		}
	}
	if len(r.buf) > r.maxAU() {
		return fmt.Errorf("%w: no start code in %d bytes (is this really %s Annex-B?)", ErrNALUTooLarge, len(r.buf), r.codec)
	}
	if cap(r.buf)-len(r.buf) < readChunk {
		nb := make([]byte, len(r.buf), 2*cap(r.buf)+readChunk)
		copy(nb, r.buf)
		r.buf = nb
	}
	n, err := r.r.Read(r.buf[len(r.buf):cap(r.buf)])
	r.buf = r.buf[:len(r.buf)+n]
	switch {
	case errors.Is(err, io.EOF):
		r.eof = true
	case err != nil:
		return err
	}
	return nil
}

// trimZeros drops trailing zero bytes: the leading zero of a following
// 4-byte start code, or trailing_zero_8bits.
func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// AppendAnnexB appends NAL units with 4-byte start codes to dst.
func AppendAnnexB(dst []byte, nalus [][]byte) []byte {
	for _, n := range nalus {
		dst = append(dst, 0, 0, 0, 1)
		dst = append(dst, n...)
	}
	return dst
}
