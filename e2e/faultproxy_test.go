package e2e

import (
	"bufio"
	"bytes"
	"context"
	be "encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// faultProxy sits between kvsgo put and kvsgo serve on loopback, at the
// HTTP level. It can rewrite or drop the acknowledgement lines of PutMedia
// responses, and fail chosen fragments as the service does: the fragment
// never reaches the server, an ERROR ack names it, and the response ends.
type faultProxy struct {
	url string
	srv *http.Server

	mu      sync.Mutex
	rewrite func(line []byte) []byte // nil: pass; returns nil to drop
	// fail maps the n-th fragment (counted by new timecodes, from 1) to
	// the ErrorId it is failed with.
	fail     map[int]int
	seen     int
	maxTC    int64
	injected []kvs.Ack
}

type injectKey struct{}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, _ := url.Parse(target)
	p := &faultProxy{fail: map[int]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == "/putMedia" && resp.StatusCode == 200 {
			inj, _ := resp.Request.Context().Value(injectKey{}).(chan []byte)
			resp.Body = p.filter(resp.Body, inj)
		}
		return nil
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		if r.URL.Path == "/putMedia" {
			inj := make(chan []byte, 1)
			r.Body = &clusterFilter{p: p, r: r.Body, inj: inj}
			r = r.WithContext(context.WithValue(r.Context(), injectKey{}, inj))
		}
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: handler}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *faultProxy) setRewrite(f func([]byte) []byte) {
	p.mu.Lock()
	p.rewrite = f
	p.mu.Unlock()
}

// failFragments fails the given fragments (n-th new timecode) with
// ErrorIds.
func (p *faultProxy) failFragments(m map[int]int) {
	p.mu.Lock()
	p.fail = m
	p.mu.Unlock()
}

func (p *faultProxy) injectedAcks() []kvs.Ack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]kvs.Ack(nil), p.injected...)
}

// filter passes ack lines through the current rewrite; when the request
// failed a fragment, the ERROR follows the server's last acks and ends the
// response, as the service ends it after an ERROR.
func (p *faultProxy) filter(body io.ReadCloser, inj chan []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer body.Close()
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			line := append(sc.Bytes(), '\n')
			p.mu.Lock()
			rw := p.rewrite
			p.mu.Unlock()
			if rw != nil {
				line = rw(line)
			}
			if line != nil {
				if _, err := pw.Write(line); err != nil {
					return
				}
			}
		}
		select {
		case line := <-inj:
			_, _ = pw.Write(line)
		default:
		}
		pw.CloseWithError(sc.Err())
	}()
	return pr
}

// clusterStart is how kvsgo's Matroska writer starts a cluster: the ID,
// an unknown size and the Timecode element's ID and size (8 bytes follow).
var clusterStart = []byte{0x1f, 0x43, 0xb6, 0x75, 0xff, 0xe7, 0x88}

// clusterFilter passes a PutMedia body on until a fragment to fail
// starts: there the body ends (the server completes the fragment before
// it), and the ERROR is handed to the response.
type clusterFilter struct {
	p       *faultProxy
	r       io.ReadCloser
	inj     chan []byte
	pending []byte
	out     []byte
	ended   bool
	buf     [32 << 10]byte
}

func (c *clusterFilter) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.ended {
			return 0, io.EOF
		}
		n, err := c.r.Read(c.buf[:])
		c.pending = append(c.pending, c.buf[:n]...)
		c.scan(err != nil)
		if err != nil && len(c.out) == 0 {
			c.ended = true
			if len(c.pending) > 0 {
				c.out, c.pending = c.pending, nil
				break
			}
			return 0, err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// scan moves what is surely not the start of a failed fragment from
// pending to out.
func (c *clusterFilter) scan(eof bool) {
	const whole = 7 + 8
	from := 0
	for {
		i := bytes.Index(c.pending[from:], clusterStart)
		if i < 0 {
			break
		}
		i += from
		if len(c.pending)-i < whole {
			// Its timecode has not come yet.
			c.out = append(c.out, c.pending[:i]...)
			c.pending = c.pending[i:]
			return
		}
		tc := int64(be.BigEndian.Uint64(c.pending[i+7:]))
		if id := c.p.newCluster(tc); id != 0 {
			c.out = append(c.out, c.pending[:i]...)
			c.pending, c.ended = nil, true
			a := kvs.ErrorAck(id, tc, true, "0")
			c.p.mu.Lock()
			c.p.injected = append(c.p.injected, a)
			c.p.mu.Unlock()
			c.inj <- a.AppendJSON(nil)
			return
		}
		from = i + whole
	}
	keep := 0
	if !eof {
		keep = min(len(c.pending), len(clusterStart)-1) // a start may be cut in two
	}
	c.out = append(c.out, c.pending[:len(c.pending)-keep]...)
	c.pending = append(c.pending[:0], c.pending[len(c.pending)-keep:]...)
}

// newCluster counts a cluster timecode; it returns the ErrorId to fail it
// with, or 0.
func (p *faultProxy) newCluster(tc int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tc <= p.maxTC {
		return 0 // sent again
	}
	p.maxTC = tc
	p.seen++
	return p.fail[p.seen]
}

func (c *clusterFilter) Close() error { return c.r.Close() }

// tcpProxy forwards TCP connections to a server and can misbehave as
// networks do: drop (close every connection and refuse new ones), stall
// (read nothing), trickle (1 KiB/s towards the server), reset (RST).
type tcpProxy struct {
	url    string
	target string
	ln     net.Listener

	mu      sync.Mutex
	refuse  bool
	stall   bool
	trickle bool
	conns   map[net.Conn]bool // true: put's side
	wake    chan struct{}     // closed when the mode changes
	// cut counts put's connections the proxy closed, reset or refused:
	// the proof that a fault happened.
	cut int
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	u, _ := url.Parse(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{url: "http://" + ln.Addr().String(), target: u.Host, ln: ln, conns: map[net.Conn]bool{}, wake: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.set(func() { p.refuse, p.stall, p.trickle = false, false, false })
		p.closeAll(false)
		wg.Wait()
	})
	return p
}

// set changes the mode and wakes the connections.
func (p *tcpProxy) set(f func()) {
	p.mu.Lock()
	f()
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

func (p *tcpProxy) closeAll(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, client := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0) // RST
		}
		c.Close()
		if client {
			p.cut++
		}
	}
}

// cuts is how many of put's connections were closed, reset or refused.
func (p *tcpProxy) cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// drop closes every connection and refuses new ones until undrop.
func (p *tcpProxy) drop()   { p.set(func() { p.refuse = true }); p.closeAll(false) }
func (p *tcpProxy) undrop() { p.set(func() { p.refuse = false }) }

// reset tears every connection down with a TCP RST.
func (p *tcpProxy) reset() { p.closeAll(true) }

func (p *tcpProxy) setStall(on bool)   { p.set(func() { p.stall = on }) }
func (p *tcpProxy) setTrickle(on bool) { p.set(func() { p.trickle = on }) }

func (p *tcpProxy) track(c net.Conn, on, client bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.refuse {
		if client {
			p.cut++
		}
		return false
	}
	if on {
		p.conns[c] = client
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *tcpProxy) serve(client net.Conn) {
	if !p.track(client, true, true) {
		client.Close()
		return
	}
	defer p.track(client, false, true)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(server, true, false)
	defer p.track(server, false, false)
	done := make(chan struct{}, 2)
	go func() { p.pipe(client, server, true); done <- struct{}{} }()
	go func() { p.pipe(server, client, false); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
	<-done
}

// pipe copies src to dst as the mode allows.
func (p *tcpProxy) pipe(src, dst net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		stall, trickle, wake := p.stall, p.trickle && up, p.wake
		p.mu.Unlock()
		if stall {
			<-wake // reads nothing until the stall ends
			continue
		}
		n := len(buf)
		if trickle {
			n = 256 // 256 bytes every 250 ms: 1 KiB/s
		}
		k, err := src.Read(buf[:n])
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if trickle {
			select {
			case <-time.After(250 * time.Millisecond):
			case <-wake:
			}
		}
	}
}
