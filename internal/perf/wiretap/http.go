package wiretap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// requestScanner follows the client's side of an HTTP/1.1 connection
// pushed to it in pieces: request heads, bodies by Content-Length or
// chunked, and for a PutMedia request the Matroska inside the chunks.
type requestScanner struct {
	// onRequest is called for each request head; for PutMedia it returns
	// the recorder of the new session, which the body is scanned into.
	onRequest func(Request, *http.Request) *recorder

	state    int
	line     []byte // a head or a chunk-size line being assembled
	remain   int64
	firstAt  time.Time
	mkv      *mkvScanner
	rec      *recorder
	gotBody  bool
	blindErr error // set once the stream makes no sense; the rest is ignored
}

const (
	stHead = iota
	stLengthBody
	stChunkSize
	stChunkData
	stChunkEnd // the CRLF after a chunk's data
	stTrailer
)

const maxHead = 64 << 10

// feed scans p, which arrived at at.
func (s *requestScanner) feed(p []byte, at time.Time) {
	for len(p) > 0 && s.blindErr == nil {
		switch s.state {
		case stHead:
			if len(s.line) == 0 {
				s.firstAt = at
			}
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				s.line = append(s.line, p...)
				p = nil
			} else {
				s.line = append(s.line, p[:i+1]...)
				p = p[i+1:]
				if bytes.HasSuffix(s.line, []byte("\r\n\r\n")) || bytes.Equal(s.line, []byte("\r\n")) {
					s.head(at)
				}
			}
			if len(s.line) > maxHead {
				s.blind(fmt.Errorf("a request head over %d bytes", maxHead))
			}
		case stLengthBody:
			n := int(min(s.remain, int64(len(p))))
			p, s.remain = p[n:], s.remain-int64(n)
			if s.remain == 0 {
				s.state = stHead
			}
		case stChunkSize, stTrailer:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				s.line = append(s.line, p...)
				p = nil
				if len(s.line) > 4096 {
					s.blind(errors.New("a chunk-size line over 4 KiB"))
				}
				continue
			}
			s.line = append(s.line, p[:i+1]...)
			p = p[i+1:]
			line := strings.TrimRight(string(s.line), "\r\n")
			s.line = s.line[:0]
			if s.state == stTrailer {
				if line == "" {
					s.bodyEnd(at)
				}
				continue
			}
			hexLen, _, _ := strings.Cut(line, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(hexLen), 16, 64)
			if err != nil || n < 0 {
				s.blind(fmt.Errorf("chunk size %q", line))
				continue
			}
			if n == 0 {
				s.state = stTrailer
				continue
			}
			s.remain, s.state = n, stChunkData
		case stChunkData:
			n := int(min(s.remain, int64(len(p))))
			if s.mkv != nil {
				if !s.gotBody {
					s.gotBody = true
					s.rec.body(at, true)
				}
				s.mkv.feed(p[:n], at)
				if s.mkv.err != nil {
					s.rec.scanErr(fmt.Errorf("the Matroska body: %w", s.mkv.err))
					s.mkv = nil
				}
			}
			p, s.remain = p[n:], s.remain-int64(n)
			if s.remain == 0 {
				s.state, s.remain = stChunkEnd, 2
			}
		case stChunkEnd:
			n := int(min(s.remain, int64(len(p))))
			p, s.remain = p[n:], s.remain-int64(n)
			if s.remain == 0 {
				s.state = stChunkSize
			}
		}
	}
}

// head parses a complete request head.
func (s *requestScanner) head(at time.Time) {
	head := s.line
	s.line = s.line[:0]
	if bytes.Equal(head, []byte("\r\n")) {
		return // a stray CRLF between requests is allowed (RFC 9112 §2.2)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		s.blind(fmt.Errorf("request head: %w", err))
		return
	}
	s.rec, s.mkv, s.gotBody = nil, nil, false
	if s.onRequest != nil {
		if rec := s.onRequest(Request{At: s.firstAt, Method: req.Method, Path: req.URL.Path}, req); rec != nil {
			s.rec, s.mkv = rec, &mkvScanner{rec: rec}
		}
	}
	switch {
	case len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked":
		s.state = stChunkSize
	case req.ContentLength > 0:
		s.state, s.remain = stLengthBody, req.ContentLength
	default:
		s.state = stHead
		s.bodyEnd(at)
	}
}

func (s *requestScanner) bodyEnd(at time.Time) {
	if s.mkv != nil {
		s.mkv.end(at)
	}
	if s.rec != nil {
		s.rec.body(at, false)
	}
	s.state, s.mkv, s.rec = stHead, nil, nil
}

func (s *requestScanner) blind(err error) {
	s.blindErr = err
	if s.rec != nil {
		s.rec.scanErr(err)
	}
}

// ackScanner finds acknowledgement lines in the server's side of the
// connection. Each ack is a JSON object on its own line inside the chunked
// response; the chunk framing sits on lines of its own, so splitting on
// newlines is enough.
type ackScanner struct {
	rec  func() *recorder
	line []byte
}

var eventType = []byte(`{"EventType"`)

func (a *ackScanner) feed(p []byte, at time.Time) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(a.line)+len(p) <= 4096 { // longer lines are not acks
				a.line = append(a.line, p...)
			} else {
				a.line = a.line[:0]
			}
			return
		}
		a.line = append(a.line, p[:i]...)
		p = p[i+1:]
		if j := bytes.Index(a.line, eventType); j >= 0 {
			if ack, err := kvs.ParseAck(a.line[j:]); err == nil {
				if r := a.rec(); r != nil {
					r.ack(ack, at)
				}
			}
		}
		a.line = a.line[:0]
	}
}
