package server

import (
	"errors"
	"io"
)

// chunkedBody reads an HTTP/1.1 chunked request body (RFC 9112 section 7.1)
// straight from the connection: every Read is at most one read of the
// connection, into the caller's buffer, whose chunk framing is then removed
// in place. A PutMedia body is one chunk per frame or so; net/http's
// reader takes a read for each chunk's size line, one for its data and one
// for its end, where this takes one for whatever has arrived.
type chunkedBody struct {
	r     io.Reader
	state chunkState
	left  uint64 // data bytes left in the current chunk
	line  int    // length of the size or trailer line so far
	ext   bool   // in a chunk extension: the rest of the line is ignored
	ws    bool   // whitespace after the size: only the line's end may follow
	size  uint64 // the size being read
	ndig  int    // its hex digits
	err   error
}

type chunkState uint8

const (
	chunkSize      chunkState = iota // reading a size line
	chunkData                        // reading data
	chunkDataCR                      // expecting the CR after data
	chunkDataLF                      // expecting the LF after data
	chunkSizeLF                      // expecting the LF ending a size line
	chunkTrailer                     // reading trailer lines
	chunkTrailerLF                   // expecting the LF ending a trailer line
	chunkDone                        // the last chunk and the trailers are read
)

// errChunked is a malformed chunked body.
var errChunked = errors.New("malformed chunked encoding in the request body")

// maxChunkLine bounds a size line (with extensions) or a trailer line.
const maxChunkLine = 4 << 10

func newChunkedBody(r io.Reader) *chunkedBody { return &chunkedBody{r: r} }

func (c *chunkedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.err != nil {
			return 0, c.err
		}
		if c.state == chunkDone {
			return 0, io.EOF
		}
		n, err := c.r.Read(p)
		m, derr := c.decode(p[:n])
		switch {
		case derr != nil:
			c.err = derr
		case err != nil && c.state == chunkDone:
			// the end of the body was all there was
		case errors.Is(err, io.EOF):
			c.err = io.ErrUnexpectedEOF // the connection ended inside the body
		case err != nil:
			c.err = err
		}
		if m > 0 || c.state == chunkDone {
			if m == 0 {
				return 0, io.EOF
			}
			return m, nil
		}
	}
}

// decode removes the framing from b in place and returns how many data
// bytes are now at its start.
func (c *chunkedBody) decode(b []byte) (int, error) {
	out := 0
	for i := 0; i < len(b); {
		switch c.state {
		case chunkData:
			k := int(min(c.left, uint64(len(b)-i)))
			copy(b[out:], b[i:i+k])
			out += k
			i += k
			if c.left -= uint64(k); c.left == 0 {
				c.state = chunkDataCR
			}
			continue
		case chunkDone:
			return out, errChunked // bytes after the body: a pipelined request is not allowed here
		}
		ch := b[i]
		i++
		switch c.state {
		case chunkSize:
			if c.line++; c.line > maxChunkLine {
				return out, errChunked
			}
			switch {
			case ch == '\r':
				c.state = chunkSizeLF
			case ch == '\n':
				// A bare LF ends no chunk line (RFC 9112 errata 7633), as
				// for net/http: a proxy in front that framed the body
				// otherwise could smuggle a request past it.
				return out, errChunked
			case c.ext:
			case ch == ' ' || ch == '\t':
				c.ws = true // allowed at the end of the line
			case ch == ';' && !c.ws:
				c.ext = true
			default:
				v, ok := hexDigit(ch)
				if !ok || c.ws || c.ndig == 16 {
					return out, errChunked
				}
				c.size = c.size<<4 | uint64(v)
				c.ndig++
			}
		case chunkSizeLF:
			if ch != '\n' {
				return out, errChunked
			}
			if err := c.endSize(); err != nil {
				return out, err
			}
		case chunkDataCR:
			switch ch {
			case '\r':
				c.state = chunkDataLF
			default:
				return out, errChunked
			}
		case chunkDataLF:
			if ch != '\n' {
				return out, errChunked
			}
			c.state = chunkSize
		case chunkTrailer:
			switch ch {
			case '\r':
				c.state = chunkTrailerLF
			case '\n':
				c.endTrailerLine()
			default:
				if c.line++; c.line > maxChunkLine {
					return out, errChunked
				}
			}
		case chunkTrailerLF:
			if ch != '\n' {
				return out, errChunked
			}
			c.endTrailerLine()
		}
	}
	return out, nil
}

// endSize finishes a size line: data follows, or for size 0 the trailers.
func (c *chunkedBody) endSize() error {
	if c.ndig == 0 {
		return errChunked
	}
	c.left, c.line, c.ext, c.ws, c.ndig = c.size, 0, false, false, 0
	c.size = 0
	if c.left == 0 {
		c.state = chunkTrailer
		return nil
	}
	c.state = chunkData
	return nil
}

// endTrailerLine ends a trailer line; an empty one ends the body.
func (c *chunkedBody) endTrailerLine() {
	if c.line == 0 {
		c.state = chunkDone
		return
	}
	c.line = 0
	c.state = chunkTrailer
}

func hexDigit(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
