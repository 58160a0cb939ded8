package wiretap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Tap forwards TCP connections to Target and records what crosses them.
// Create it with Listen; Close stops it.
type Tap struct {
	target string
	ln     net.Listener
	now    func() time.Time

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	requests []Request
	sessions []*recorder
	closed   bool
	wg       sync.WaitGroup
}

// Listen starts a tap on addr (e.g. "127.0.0.1:0") in front of target
// ("host:port").
func Listen(addr, target string) (*Tap, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("wiretap: %w", err)
	}
	t := &Tap{target: target, ln: ln, now: time.Now, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is where the tap listens.
func (t *Tap) Addr() string { return t.ln.Addr().String() }

// URL is the tap's address as an http:// URL.
func (t *Tap) URL() string { return "http://" + t.Addr() }

// Close stops accepting, closes every connection and waits for the tap's
// goroutines to end.
func (t *Tap) Close() error {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	err := t.ln.Close()
	t.wg.Wait()
	return err
}

// Requests returns the requests seen so far, in order of arrival.
func (t *Tap) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.requests...)
}

// Sessions returns the PutMedia sessions seen so far, with each fragment
// joined to its acknowledgements.
func (t *Tap) Sessions() []Session {
	t.mu.Lock()
	recs := append([]*recorder(nil), t.sessions...)
	t.mu.Unlock()
	out := make([]Session, 0, len(recs))
	for _, r := range recs {
		r.mu.Lock()
		out = append(out, r.s.clone())
		r.mu.Unlock()
	}
	return out
}

func (t *Tap) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return // closed
		}
		if !t.track(c) {
			_ = c.Close()
			return
		}
		t.wg.Add(1)
		go t.serve(c)
	}
}

// track registers a connection to be closed by Close; false once closed.
func (t *Tap) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Tap) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// serve forwards one client connection both ways until both sides end.
func (t *Tap) serve(client net.Conn) {
	defer t.wg.Done()
	defer t.untrack(client)
	defer client.Close()
	server, err := net.Dial("tcp", t.target)
	if err != nil {
		return // the client sees its connection closed, as with no server
	}
	if !t.track(server) {
		_ = server.Close()
		return
	}
	defer t.untrack(server)
	defer server.Close()

	var cur struct {
		sync.Mutex
		rec *recorder
	}
	reqs := &requestScanner{onRequest: func(r Request, hr *http.Request) *recorder {
		var rec *recorder
		if r.Method == http.MethodPost && r.Path == "/putMedia" {
			rec = &recorder{s: &Session{Stream: hr.Header.Get("x-amzn-stream-name"), Opened: r.At}, cur: -1}
		}
		t.mu.Lock()
		t.requests = append(t.requests, r)
		if rec != nil {
			t.sessions = append(t.sessions, rec)
		}
		t.mu.Unlock()
		if rec != nil {
			cur.Lock()
			cur.rec = rec
			cur.Unlock()
		}
		return rec
	}}
	acks := &ackScanner{rec: func() *recorder {
		cur.Lock()
		defer cur.Unlock()
		return cur.rec
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.pipe(server, client, acks.feed)
	}()
	t.pipe(client, server, reqs.feed)
	<-done
}

// pipe copies src to dst, handing each piece and the time it arrived to
// scan after forwarding it, so that scanning never delays the bytes. At
// the end of src it half-closes dst, as HTTP clients finish a request body
// and still read the response.
func (t *Tap) pipe(src, dst net.Conn, scan func([]byte, time.Time)) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		at := t.now()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
			scan(buf[:n], at)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			_ = dst.Close()
			return
		}
	}
}
