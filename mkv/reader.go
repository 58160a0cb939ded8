package mkv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Element is one EBML element as the Reader meets it.
type Element struct {
	ID ID
	// Size of the body in bytes, or UnknownSize.
	Size int64
	// Offset of the element's ID from the start of the input.
	Offset int64
	// HeaderSize is the length of the ID and size fields.
	HeaderSize int
	// Parent is the ID of the enclosing master element, 0 at the top.
	Parent ID
	// Depth is 0 for top-level elements (EBML, Segment), 1 for their
	// children, and so on.
	Depth int
}

// DataOffset returns the offset of the element's body.
func (e Element) DataOffset() int64 { return e.Offset + int64(e.HeaderSize) }

// Master reports whether the Reader descends into this element.
func (e Element) Master() bool { return isMaster(e.ID) }

// Reader limits.
const (
	DefaultMaxElementSize = 64 << 20
	maxDepth              = 16
)

type openElement struct {
	id  ID
	end int64 // UnknownSize when the size is unknown
}

// Reader walks an EBML stream element by element in document order. It
// descends into the master elements Matroska streams are made of and
// returns their children next; the body of any other element is skipped
// unless Data is called. Elements of unknown size end where an element that
// cannot be their child begins, or at the end of the input. Memory is
// bounded by the largest body read with Data.
type Reader struct {
	// MaxElementSize bounds the body Data will read;
	// DefaultMaxElementSize when zero.
	MaxElementSize int64

	br    Source
	off   int64
	stack []openElement
	cur   Element
	left  int64 // unread body bytes of cur, for non-master elements
	data  []byte
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Source is what a Reader reads from: a reader that can look ahead a few
// bytes. *bufio.Reader is one. A caller that must see the input bytes
// themselves (a server writing them to disk as they arrive) gives its own,
// so that they are buffered once.
type Source interface {
	io.Reader
	// Peek returns the next n bytes without consuming them; fewer, with
	// an error, at the end of the input. n is at most 12 (an element's ID
	// and size), or what Head asks for.
	Peek(n int) ([]byte, error)
	// Discard skips the next n bytes.
	Discard(n int) (int, error)
}

// NewReaderSource returns a Reader of src, which it reads without another
// buffer of its own.
func NewReaderSource(src Source) *Reader { return &Reader{br: src} }

// Current returns the element Next returned last. While its body is being
// read or skipped, the bytes up to its end are known to belong to it.
func (r *Reader) Current() Element { return r.cur }

// Offset returns how many input bytes have been consumed.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next element. At the end of the input it returns io.EOF
// (any open elements of unknown size simply end there), or
// io.ErrUnexpectedEOF inside an element of known size.
func (r *Reader) Next() (Element, error) {
	if r.left > 0 {
		if err := r.discard(r.left); err != nil {
			return Element{}, err
		}
		r.left = 0
	}
	if _, err := r.PopEnded(); err != nil {
		return Element{}, err
	}
	hdr, err := r.peekHeader()
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) == 0 {
			if r.insideKnownSize() {
				return Element{}, io.ErrUnexpectedEOF
			}
			return Element{}, io.EOF
		}
		if len(hdr) == 0 || !errors.Is(err, io.EOF) && !errors.Is(err, errShort) {
			return Element{}, err
		}
	}
	id, idLen, err := readID(hdr)
	if err != nil {
		return Element{}, r.headerErr(err)
	}
	size, sizeLen, unknown, err := readVint(hdr[idLen:])
	if err != nil {
		return Element{}, r.headerErr(err)
	}
	e := Element{ID: id, Offset: r.off, HeaderSize: idLen + sizeLen, Size: int64(size)}
	if unknown {
		if !isMaster(id) {
			return Element{}, fmt.Errorf("%w: element 0x%X of unknown size at offset %d", ErrInvalid, uint32(id), r.off)
		}
		e.Size = UnknownSize
	} else if size > 1<<56 {
		return Element{}, fmt.Errorf("%w: element 0x%X claims %d bytes", ErrInvalid, uint32(id), size)
	}
	r.closeUnknownFor(id)
	if n := len(r.stack); n > 0 {
		top := r.stack[n-1]
		e.Parent, e.Depth = top.id, n
		// An element of unknown size inside one of known size ends with it
		// (RFC 8794 6.2); a known size must fit in every known ancestor.
		if end := r.knownEnd(); end >= 0 && e.Size != UnknownSize && (e.DataOffset()+e.Size > end || e.DataOffset() > end) {
			return Element{}, fmt.Errorf("%w: element 0x%X at offset %d does not fit in its parent 0x%X", ErrInvalid, uint32(id), e.Offset, uint32(top.id))
		}
	}
	if _, err := r.br.Discard(e.HeaderSize); err != nil {
		return Element{}, err
	}
	r.off += int64(e.HeaderSize)
	if isMaster(id) {
		if len(r.stack) >= maxDepth {
			return Element{}, fmt.Errorf("%w: elements nested deeper than %d", ErrInvalid, maxDepth)
		}
		end := int64(UnknownSize)
		if e.Size != UnknownSize {
			end = e.DataOffset() + e.Size
		}
		r.stack = append(r.stack, openElement{id: id, end: end})
	} else {
		r.left = e.Size
	}
	r.cur = e
	return e, nil
}

// PopEnded closes the open elements of known size whose last byte has been
// read, and returns the depth of the outermost one closed, or -1. It lets a
// caller learn that a Cluster is complete without waiting for the next
// element to arrive.
func (r *Reader) PopEnded() (int, error) {
	if r.left > 0 {
		return -1, nil
	}
	// The outermost known-size element that has ended closes everything
	// inside it, unknown sizes included.
	depth := -1
	for i, o := range r.stack {
		if o.end < 0 || r.off < o.end {
			continue
		}
		if r.off > o.end {
			return -1, fmt.Errorf("%w: element 0x%X overruns its parent at offset %d", ErrInvalid, uint32(o.id), r.off)
		}
		depth = i
		break
	}
	if depth >= 0 {
		r.stack = r.stack[:depth]
	}
	return depth, nil
}

// knownEnd returns the end of the innermost open element of known size,
// or -1.
func (r *Reader) knownEnd() int64 {
	for i := len(r.stack) - 1; i >= 0; i-- {
		if r.stack[i].end >= 0 {
			return r.stack[i].end
		}
	}
	return -1
}

// peekHeader returns the bytes of the next element's ID and size without
// consuming them. It asks for exactly as many bytes as the header has, so
// that a short final element (a 10-byte TagString closing a fragment) is
// seen while the sender waits for an answer.
func (r *Reader) peekHeader() ([]byte, error) {
	b, err := r.br.Peek(1)
	if err != nil {
		return b, err
	}
	idLen := 1
	for mask := byte(0x80); b[0]&mask == 0 && idLen <= 4; mask >>= 1 {
		idLen++
	}
	if idLen > 4 {
		return b, nil // readID reports it
	}
	if b, err = r.br.Peek(idLen + 1); err != nil {
		return b, err
	}
	sizeLen := 1
	for mask := byte(0x80); b[idLen]&mask == 0 && sizeLen <= 8; mask >>= 1 {
		sizeLen++
	}
	if sizeLen > 8 {
		return b, nil // readVint reports it
	}
	return r.br.Peek(idLen + sizeLen)
}

// headerErr turns a header cut short by the end of input into
// io.ErrUnexpectedEOF.
func (r *Reader) headerErr(err error) error {
	if errors.Is(err, errShort) {
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w (at offset %d)", err, r.off)
}

func (r *Reader) insideKnownSize() bool {
	for _, o := range r.stack {
		if o.end >= 0 {
			return true
		}
	}
	return false
}

// closeUnknownFor ends the open unknown-size elements that the element id
// cannot be nested in, as far as the schema knows its parent.
func (r *Reader) closeUnknownFor(id ID) {
	parent, known := parentOf(id)
	if !known {
		return
	}
	// Find the nearest ancestor that can hold id; everything above it must
	// be of unknown size for the schema to close it.
	i := len(r.stack) - 1
	for ; i >= 0; i-- {
		if r.stack[i].id == parent {
			break
		}
		if r.stack[i].end >= 0 {
			return
		}
	}
	if i < 0 && parent != 0 {
		return // no possible parent open: leave it where it is
	}
	r.stack = r.stack[:i+1]
}

// Head returns up to n bytes of the start of the current element's body
// without consuming them (a block's track, timecode and flags), so that the
// rest can be skipped unread. It must come before Data.
func (r *Reader) Head(n int) ([]byte, error) {
	if isMaster(r.cur.ID) {
		return nil, fmt.Errorf("mkv: Head called on master element 0x%X", uint32(r.cur.ID))
	}
	n = int(min(int64(n), r.left))
	b, err := r.br.Peek(n)
	if err != nil && len(b) < n {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// Data reads the body of the element Next returned last. The slice is
// valid until the next call to Next or Data.
func (r *Reader) Data() ([]byte, error) {
	if isMaster(r.cur.ID) {
		return nil, fmt.Errorf("mkv: Data called on master element 0x%X", uint32(r.cur.ID))
	}
	limit := r.MaxElementSize
	if limit <= 0 {
		limit = DefaultMaxElementSize
	}
	if r.left > limit {
		return nil, fmt.Errorf("%w: element 0x%X of %d bytes (limit %d)", ErrTooLarge, uint32(r.cur.ID), r.left, limit)
	}
	// Grow the buffer as the bytes arrive rather than trusting the size a
	// sender claims: a few bytes must not reserve megabytes.
	n := int(r.left)
	r.data = r.data[:0]
	for len(r.data) < n {
		chunk := min(n-len(r.data), max(64<<10, len(r.data)))
		if cap(r.data)-len(r.data) < chunk {
			grown := make([]byte, len(r.data), len(r.data)+chunk)
			copy(grown, r.data)
			r.data = grown
		}
		start := len(r.data)
		r.data = r.data[:start+chunk]
		read, err := io.ReadFull(r.br, r.data[start:])
		r.off += int64(read)
		r.left -= int64(read)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return r.data, nil
}

// Skip skips the rest of the element Next returned last, children included
// when its size is known. An unknown-size master cannot be skipped without
// reading it, so its children simply follow.
func (r *Reader) Skip() error {
	if !isMaster(r.cur.ID) || r.cur.Size == UnknownSize {
		return nil
	}
	n := len(r.stack)
	if n == 0 || r.stack[n-1].id != r.cur.ID || r.off != r.cur.DataOffset() {
		return nil // already inside it
	}
	if err := r.discard(r.cur.Size); err != nil {
		return err
	}
	r.stack = r.stack[:n-1]
	return nil
}

func (r *Reader) discard(n int64) error {
	for n > 0 {
		chunk := int(min(n, 1<<30))
		d, err := r.br.Discard(chunk)
		r.off += int64(d)
		n -= int64(d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
