package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// guard bounds how long a client may take: the request body must arrive
// within RequestTimeout (PutMedia's stream excepted: IdleTimeout and the
// connection's maximum age bound it), and each write of the response must
// be taken within RequestTimeout. A request that waits for data (GetMedia
// at the live edge, a blocking playlist reload) writes nothing while it
// waits, so only a client that stops reading is cut off.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	rc := http.NewResponseController(w)
	if r.URL.Path != "/putMedia" {
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	}
	return &deadlineWriter{ResponseWriter: w, rc: rc, timeout: s.cfg.RequestTimeout}
}

// deadlineWriter moves the connection's write deadline before it writes.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	set     time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.extend()
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) WriteHeader(code int) {
	d.extend()
	d.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func (d *deadlineWriter) extend() {
	// Moving a deadline costs a timer update: once a second is enough.
	if now := time.Now(); now.Sub(d.set) >= time.Second {
		_ = d.rc.SetWriteDeadline(now.Add(d.timeout))
		d.set = now
	}
}

// ConnLimits caps the connections a listener keeps open: in total, and
// from one client address. Zero is no cap.
type ConnLimits struct {
	Total, PerClient int
	// HTTP: answer a refused connection with a 503 saying why (plain
	// HTTP); otherwise (TLS) it is just closed.
	HTTP bool
}

// LimitListener applies limits to ln: a connection over a cap is refused
// at once, with a 503 ServiceUnavailable that says which cap and how to
// raise it (SDKs retry a 503 after a pause), so one client cannot take
// every connection and none can exhaust the server's file descriptors.
func (s *Server) LimitListener(ln net.Listener, limits ConnLimits) net.Listener {
	return &limitListener{Listener: ln, s: s, limits: limits, perClient: map[string]int{}, refusing: make(chan struct{}, 64)}
}

type limitListener struct {
	net.Listener
	s      *Server
	limits ConnLimits

	mu        sync.Mutex
	total     int
	perClient map[string]int
	lastLog   time.Time
	unlogged  int

	refusing chan struct{} // bounds the refusals answered at once
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr())
		l.mu.Lock()
		var why string
		switch {
		case l.limits.Total > 0 && l.total >= l.limits.Total:
			why = fmt.Sprintf("the server has %d connections open, its limit (--max-conns)", l.total)
		case l.limits.PerClient > 0 && l.perClient[client] >= l.limits.PerClient:
			why = fmt.Sprintf("%s already has %d connections open, the limit for one client (--max-conns-per-client)", client, l.perClient[client])
		default:
			l.total++
			l.perClient[client]++
			l.mu.Unlock()
			return &limitedConn{Conn: c, l: l, client: client}, nil
		}
		l.logRefusal(client, why)
		l.mu.Unlock()
		l.refuse(c, why)
	}
}

// logRefusal logs at most one line a second, with how many it stands for.
// l.mu is held.
func (l *limitListener) logRefusal(client, why string) {
	l.s.metrics.refused.Inc()
	l.unlogged++
	if now := time.Now(); now.Sub(l.lastLog) >= time.Second {
		l.s.log.Warn("connection refused", "client", client, "why", why, "refused_since_last_line", l.unlogged)
		l.lastLog, l.unlogged = now, 0
	}
}

// refuse answers and closes a connection over a cap, without holding up
// the accept loop.
func (l *limitListener) refuse(c net.Conn, why string) {
	if !l.limits.HTTP {
		c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close() // too many at once: no answer
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		body := fmt.Sprintf(`{"Message":"kvsgo serve refused the connection: %s. Close connections you do not use, or raise the limit."}`+"\n", why)
		_ = c.SetDeadline(time.Now().Add(time.Second))
		// Read the request's header first: an answer that comes before the
		// request is one HTTP clients (Go's among them) take for a broken
		// connection, not for the 503 it is.
		br := bufio.NewReaderSize(io.LimitReader(c, 64<<10), 4096)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) || len(bytes.TrimSpace(line)) == 0 {
				break
			}
		}
		_, err := fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
			"X-Amzn-ErrorType: ServiceUnavailable:%s\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
			errorNamespace, len(body), body)
		if err != nil {
			return
		}
		// Let the client read the answer before the close: a close with
		// its request unread would reset the connection.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

func (l *limitListener) release(client string) {
	l.mu.Lock()
	l.total--
	if l.perClient[client]--; l.perClient[client] <= 0 {
		delete(l.perClient, client)
	}
	l.mu.Unlock()
}

// clientOf is the address a client is counted by: its IP address.
func clientOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type limitedConn struct {
	net.Conn
	l      *limitListener
	client string
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client) })
	return err
}
