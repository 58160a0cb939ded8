package server

import (
	"errors"
	"fmt"
	"io"
)

// window is a PutMedia session's one input buffer. The demuxer reads from
// it (it is the mkv.Source), and the bytes the demuxer has passed stay in
// it until the session has put them where they belong: written through to
// the fragment being stored, kept as the connection's header, or dropped.
// When it is full it asks the session to do that (reclaim), so it stays at
// a few tens of kilobytes whatever the fragment's size; only bytes that
// must stay in memory (a header, tags before a fragment) can make it grow,
// up to hard.
type window struct {
	r    io.Reader
	buf  []byte // input from offset base on
	base int64
	pos  int // the demuxer's position in buf
	size int // what it normally holds
	hard int // the most it may hold
	// reclaim writes out what it can and returns the first offset still
	// needed.
	reclaim func() (int64, error)
	err     error // from r, once it failed
}

// errWindowFull: more than hard bytes had to be kept.
var errWindowFull = errors.New("too much Matroska header or tag data before a fragment")

// minRead is the least room a read from the body gets.
const minRead = 4 << 10

func newWindow(r io.Reader, size, hard int, reclaim func() (int64, error)) *window {
	return &window{r: r, buf: make([]byte, 0, size), size: size, hard: hard, reclaim: reclaim}
}

// offset returns the stream offset of the demuxer's position.
func (w *window) offset() int64 { return w.base + int64(w.pos) }

// bytes returns the buffered input from off to end; both must be held.
func (w *window) bytes(off, end int64) []byte { return w.buf[off-w.base : end-w.base] }

// held reports whether the input from off on is still in the buffer.
func (w *window) held(off int64) bool { return off >= w.base }

// Peek implements mkv.Source.
func (w *window) Peek(n int) ([]byte, error) {
	for len(w.buf)-w.pos < n {
		if err := w.fill(); err != nil {
			return w.buf[w.pos:], err
		}
	}
	return w.buf[w.pos : w.pos+n], nil
}

// Discard implements mkv.Source.
func (w *window) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if len(w.buf) == w.pos {
			if err := w.fill(); err != nil {
				return done, err
			}
		}
		k := min(n-done, len(w.buf)-w.pos)
		w.pos += k
		done += k
	}
	return done, nil
}

// Read implements mkv.Source.
func (w *window) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(w.buf) == w.pos {
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, w.buf[w.pos:])
	w.pos += n
	return n, nil
}

// fill reads more input, first making room.
func (w *window) fill() error {
	if w.err != nil {
		return w.err
	}
	if cap(w.buf)-len(w.buf) < minRead {
		if err := w.makeRoom(); err != nil {
			return err
		}
	}
	n, err := w.r.Read(w.buf[len(w.buf):cap(w.buf)])
	w.buf = w.buf[:len(w.buf)+n]
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	if err != nil && n == 0 {
		w.err = err
		return err
	}
	return nil
}

func (w *window) makeRoom() error {
	keep, err := w.reclaim()
	if err != nil {
		w.err = err
		return err
	}
	keep = min(keep, w.offset()) // never what the demuxer has not read
	if drop := int(keep - w.base); drop > 0 {
		n := copy(w.buf, w.buf[drop:])
		w.buf = w.buf[:n]
		w.pos -= drop
		w.base = keep
	}
	if cap(w.buf)-len(w.buf) >= minRead {
		return nil
	}
	grown := 2 * cap(w.buf)
	if grown > w.hard {
		w.err = fmt.Errorf("%w (more than %d bytes)", errWindowFull, w.hard)
		return w.err
	}
	b := make([]byte, len(w.buf), grown)
	copy(b, w.buf)
	w.buf = b
	return nil
}

// shrink drops the input before keep and gives back the memory a header
// or tags made the buffer take, once they are out of it.
func (w *window) shrink(keep int64) {
	keep = min(keep, w.offset())
	if drop := int(keep - w.base); drop > 0 {
		n := copy(w.buf, w.buf[drop:])
		w.buf = w.buf[:n]
		w.pos -= drop
		w.base = keep
	}
	if cap(w.buf) > w.size && len(w.buf) <= w.size/2 {
		b := make([]byte, len(w.buf), w.size)
		copy(b, w.buf)
		w.buf = b
	}
}
