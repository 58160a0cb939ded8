package mkv

import (
	"encoding/binary"
	"fmt"
)

// Block is a parsed SimpleBlock or Block.
type Block struct {
	Track uint64
	// Timecode relative to the Cluster's, in timecode units.
	Timecode int16
	Flags    byte
	// Frames holds one frame, or several when the block is laced. The
	// slices point into the data the block was parsed from.
	Frames [][]byte
}

// Key reports the key-frame flag (SimpleBlock only; for a Block, a
// BlockGroup without ReferenceBlock is a key frame).
func (b *Block) Key() bool { return b.Flags&FlagKey != 0 }

// ParseBlock parses the body of a SimpleBlock or Block, lacing included.
// frames is reused for the result.
func ParseBlock(data []byte, frames [][]byte) (Block, error) {
	track, w, unknown, err := readVint(data)
	if err != nil || unknown {
		return Block{}, fmt.Errorf("%w: block track number", ErrInvalid)
	}
	if len(data) < w+3 {
		return Block{}, fmt.Errorf("%w: block of %d bytes", ErrInvalid, len(data))
	}
	b := Block{
		Track:    track,
		Timecode: int16(binary.BigEndian.Uint16(data[w:])),
		Flags:    data[w+2],
	}
	payload := data[w+3:]
	lacing := (b.Flags >> 1) & 3
	if lacing == 0 {
		b.Frames = append(frames[:0], payload)
		return b, nil
	}
	b.Frames, err = unlace(frames[:0], payload, lacing)
	return b, err
}

// unlace splits a laced block (Xiph 1, fixed 2, EBML 3).
func unlace(frames [][]byte, p []byte, lacing byte) ([][]byte, error) {
	if len(p) < 1 {
		return nil, fmt.Errorf("%w: laced block without frame count", ErrInvalid)
	}
	count := int(p[0]) + 1
	p = p[1:]
	sizes := make([]int, 0, count)
	switch lacing {
	case 1: // Xiph: each size is a run of 255s plus a final byte
		for range count - 1 {
			n := 0
			for {
				if len(p) == 0 {
					return nil, fmt.Errorf("%w: truncated Xiph lacing", ErrInvalid)
				}
				c := p[0]
				p = p[1:]
				n += int(c)
				if c != 255 {
					break
				}
			}
			sizes = append(sizes, n)
		}
	case 2: // fixed: equal sizes
		if len(p)%count != 0 {
			return nil, fmt.Errorf("%w: %d bytes do not split into %d equal frames", ErrInvalid, len(p), count)
		}
		for range count - 1 {
			sizes = append(sizes, len(p)/count)
		}
	case 3: // EBML: first size a vint, then signed differences
		if count == 1 {
			break // a single frame has no size: it is the rest
		}
		first, w, _, err := readVint(p)
		if err != nil {
			return nil, fmt.Errorf("%w: EBML lacing", ErrInvalid)
		}
		p = p[w:]
		n := int64(first)
		sizes = append(sizes, int(n))
		for range count - 2 {
			v, w, _, err := readVint(p)
			if err != nil {
				return nil, fmt.Errorf("%w: EBML lacing", ErrInvalid)
			}
			p = p[w:]
			n += int64(v) - (int64(1)<<(7*w-1) - 1)
			if n < 0 || n > int64(len(p)) {
				return nil, fmt.Errorf("%w: EBML lace size %d", ErrInvalid, n)
			}
			sizes = append(sizes, int(n))
		}
	}
	for _, n := range sizes {
		if n < 0 || n > len(p) {
			return nil, fmt.Errorf("%w: lace of %d bytes with %d left", ErrInvalid, n, len(p))
		}
		frames = append(frames, p[:n])
		p = p[n:]
	}
	return append(frames, p), nil
}
