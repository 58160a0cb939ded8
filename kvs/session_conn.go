package kvs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// connBody is a PutMedia request on a connection of its own: the request
// head goes out at once, and each Write is one chunk of the body, written
// by the caller straight to the socket (one writev of the chunk's size
// line, payload and CRLF). A goroutine reads the response: the go-ahead
// (100 Continue), then the acks. No goroutine stands between a frame and
// the socket, so a frame costs one system call, not a hand-off.
type connBody struct {
	ready     chan struct{} // closed when the body may go out
	readyOnce sync.Once
	failed    error // why the body cannot go out; set before ready closes

	// Set before ready closes; used by the one writer after it.
	conn    net.Conn
	raw     *rawWriter // nil where writes go through conn (TLS)
	sizeBuf [20]byte
	bufs    [3][]byte
	pending []byte // framed bytes TryWrite took that the socket did not
	scratch []byte // TLS: a chunk in one record
}

// expectWait is how long the body waits for 100 Continue before it goes
// out anyway, as net/http's default transport does.
const expectWait = time.Second

var crlf = []byte("\r\n")

func startConnSession(ctx context.Context, s *Session, req *http.Request, offset time.Duration) *connBody {
	b := &connBody{ready: make(chan struct{})}
	go b.run(ctx, s, req, offset)
	return b
}

func (b *connBody) markReady(err error) {
	b.readyOnce.Do(func() {
		b.failed = err
		close(b.ready)
	})
}

// run owns the connection: it dials, sends the request head and reads the
// response until it ends.
func (b *connBody) run(ctx context.Context, s *Session, req *http.Request, offset time.Duration) {
	defer close(s.done)
	defer close(s.acks)
	conn, err := dialEndpoint(ctx, req.URL)
	if err != nil {
		s.err = fmt.Errorf("connecting to %s: %w", req.URL.Host, err)
		b.markReady(s.err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // Abort
	defer stop()
	b.conn, b.raw = conn, newRawWriter(conn)
	if _, err := conn.Write(requestHead(req)); err != nil {
		s.err = fmt.Errorf("sending the PutMedia request to %s: %w", req.URL.Host, err)
		b.markReady(s.err)
		return
	}
	// A server that ignores Expect gets the body after a while anyway.
	t := time.AfterFunc(expectWait, func() { b.markReady(nil) })
	defer t.Stop()
	br := bufio.NewReaderSize(conn, 4096)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			s.err = fmt.Errorf("reading the PutMedia response from %s: %w", req.URL.Host, err)
			if ctx.Err() != nil {
				s.err = errAborted
			}
			b.markReady(s.err)
			return
		}
		if resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusContinue {
				b.markReady(nil)
			}
			continue
		}
		if resp.StatusCode == http.StatusOK {
			b.markReady(nil)
		}
		s.err = s.response(resp, offset)
		if ctx.Err() != nil && !errors.Is(s.err, ErrRefused) {
			s.err = errAborted
		}
		b.markReady(s.err)
		return
	}
}

// dialEndpoint connects to the endpoint's host, with TLS for https, with
// net/http's default transport's time limits.
func dialEndpoint(ctx context.Context, u *url.URL) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	host, port := u.Hostname(), u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
		return d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	case "https":
		if port == "" {
			port = "443"
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second+d.Timeout)
		defer cancel()
		td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}}
		return td.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	}
	return nil, fmt.Errorf("the endpoint %q is neither http nor https", u.String())
}

// requestHead is the request line and headers of a chunked request.
func requestHead(req *http.Request) []byte {
	var b bytes.Buffer
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), host)
	_ = req.Header.Write(&b)
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	return b.Bytes()
}

// frame returns p as one chunk: its size line, p and CRLF.
func (b *connBody) frame(p []byte) [][]byte {
	size := strconv.AppendUint(b.sizeBuf[:0], uint64(len(p)), 16)
	size = append(size, '\r', '\n')
	b.bufs = [3][]byte{size, p, crlf}
	return b.bufs[:]
}

// wait waits for the go-ahead.
func (b *connBody) wait() error {
	<-b.ready
	return b.failed
}

func (b *connBody) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the body
	}
	if err := b.wait(); err != nil {
		return 0, err
	}
	if err := b.Flush(); err != nil {
		return 0, err
	}
	if err := b.write(b.frame(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// write sends bufs whole, blocking.
func (b *connBody) write(bufs [][]byte) error {
	if b.raw != nil {
		_, err := b.raw.write(bufs, true)
		return err
	}
	b.scratch = b.scratch[:0]
	for _, x := range bufs {
		b.scratch = append(b.scratch, x...)
	}
	_, err := b.conn.Write(b.scratch)
	return err
}

func (b *connBody) TryWrite(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	select {
	case <-b.ready:
	default:
		return false
	}
	if b.failed != nil || b.raw == nil || len(b.pending) > 0 && !b.tryFlush() {
		return false
	}
	bufs := b.frame(p)
	n, err := b.raw.write(bufs, false)
	if err != nil {
		return false // the writer that comes next meets the error
	}
	// Keep what the socket did not take, in order.
	for _, x := range bufs {
		if n >= len(x) {
			n -= len(x)
			continue
		}
		b.pending = append(b.pending, x[n:]...)
		n = 0
	}
	return true
}

// tryFlush writes what is pending without blocking; it reports whether
// all of it went out.
func (b *connBody) tryFlush() bool {
	n, err := b.raw.write([][]byte{b.pending}, false)
	if err != nil {
		return false
	}
	b.pending = b.pending[:copy(b.pending, b.pending[n:])]
	return len(b.pending) == 0
}

func (b *connBody) Pending() bool { return len(b.pending) > 0 }

func (b *connBody) Flush() error {
	if len(b.pending) == 0 {
		return nil
	}
	if err := b.write([][]byte{b.pending}); err != nil {
		return err
	}
	b.pending = b.pending[:0]
	return nil
}

var lastChunk = []byte("0\r\n\r\n")

func (b *connBody) Close() error {
	if err := b.wait(); err != nil {
		return err
	}
	if err := b.Flush(); err != nil {
		return err
	}
	return b.write([][]byte{lastChunk})
}

// Abort needs nothing of its own: cancelling the session's context closes
// the connection, and a writer blocked on the go-ahead is released when
// run ends.
func (b *connBody) Abort(error) {}
