package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// emptyPayloadHash is what producers sign for a streamed PutMedia body,
// as AWS's C producer does.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// producer is one camera: a PutMedia connection written to by its own
// goroutine, one write per frame, and read by another for acks.
type producer struct {
	name     string
	clip     *Clip
	endpoint *url.URL // the PutMedia data endpoint
	conn     net.Conn
	br       *bufio.Reader
	req      *http.Request

	mu sync.Mutex
	// pending maps a fragment's timecode to when the bytes that end it
	// (the next Cluster's start, or the closing END_OF_FRAGMENT tag) were
	// handed to the socket: from then on the server can store it.
	pending   map[int64]time.Time
	latencies []sample
	lags      []time.Duration
	sent      int // fragments ended
	persisted int
	errs      []string
	lastTC    int64 // the final fragment's timecode, once ended
	last      chan struct{}

	respDone chan struct{}
}

func (p *producer) errorf(format string, args ...any) {
	p.mu.Lock()
	p.errs = append(p.errs, fmt.Sprintf("%s: ", p.name)+fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// connect opens the connection and sends the signed request head. The
// server answers once the body starts.
func (p *producer) connect(ctx context.Context) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", p.endpoint.Host)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", p.endpoint.Host, err)
	}
	now := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint.String()+"/putMedia", nil)
	if err != nil {
		conn.Close()
		return err
	}
	h := req.Header
	h.Set("x-amzn-stream-name", p.name)
	h.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	h.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%03d", now.Unix(), now.Nanosecond()/1e6))
	h.Set("x-amzn-fragment-acknowledgment-required", "1")
	h.Set("User-Agent", "kvsgo-loadtest")
	creds := aws.Credentials{AccessKeyID: perf.AccessKey, SecretAccessKey: perf.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptyPayloadHash, "kinesisvideo", perf.Region, now); err != nil {
		conn.Close()
		return fmt.Errorf("signing PutMedia: %w", err)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\n", req.URL.RequestURI(), req.URL.Host)
	_ = req.Header.Write(&head)
	head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(head.Bytes()); err != nil {
		conn.Close()
		return fmt.Errorf("sending the PutMedia request: %w", err)
	}
	p.conn, p.br, p.req = conn, bufio.NewReader(conn), req
	p.pending = map[int64]time.Time{}
	p.last = make(chan struct{})
	p.respDone = make(chan struct{})
	return nil
}

// readAcks reads the response until it ends.
func (p *producer) readAcks() {
	defer close(p.respDone)
	resp, err := http.ReadResponse(p.br, p.req)
	if err != nil {
		p.errorf("no PutMedia response: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		p.errorf("PutMedia refused: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(body))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		a, err := kvs.ParseAck(line)
		if err != nil {
			p.errorf("unreadable ack %q: %v", line, err)
			continue
		}
		switch a.EventType {
		case kvs.AckPersisted:
			p.persistedAt(a.FragmentTimecode, time.Now())
		case kvs.AckError:
			p.errorf("ERROR ack %d %s for fragment %d", a.ErrorID, a.ErrorCode, a.FragmentTimecode)
		}
	}
}

func (p *producer) persistedAt(tc int64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ended, ok := p.pending[tc]
	if !ok {
		return // a duplicate, or a fragment still being sent
	}
	delete(p.pending, tc)
	p.latencies = append(p.latencies, sample{ended: ended, d: at.Sub(ended)})
	p.persisted++
	if tc == p.lastTC && p.last != nil {
		close(p.last)
		p.last = nil
	}
}

func (p *producer) ended(tc int64, at time.Time, final bool) {
	p.mu.Lock()
	p.pending[tc] = at
	p.sent++
	if final {
		p.lastTC = tc
	}
	p.mu.Unlock()
}

// sample is one fragment's latency and when it ended.
type sample struct {
	ended time.Time
	d     time.Duration
}

var crlf = []byte("\r\n")

// stream sends the clip from start until end, one write per frame, then
// ends the last fragment, waits for its PERSISTED (at most ackWait) and
// ends the body.
func (p *producer) stream(ctx context.Context, start, end time.Time, ackWait time.Duration) {
	defer p.conn.Close()
	var uid [16]byte
	_, _ = rand.Read(uid[:])
	h := mkv.Header{SegmentUID: uid, Tracks: []mkv.Track{p.clip.Track}}
	header, err := mkv.AppendHeader(nil, &h)
	if err != nil {
		p.errorf("Matroska header: %v", err)
		return
	}
	base := start.UnixMilli() // ABSOLUTE timecodes: the wall clock of PTS 0
	frames := p.clip.Frames
	var (
		chunk, mk []byte
		bufs      [4][]byte
		cluster   = int64(-1)
	)
	write := func(parts ...[]byte) error {
		n := 0
		for _, b := range parts {
			n += len(b)
		}
		chunk = strconv.AppendInt(chunk[:0], int64(n), 16)
		chunk = append(chunk, crlf...)
		v := append(append(net.Buffers(bufs[:0]), chunk), parts...)
		v = append(v, crlf)
		_ = p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := v.WriteTo(p.conn) // one writev
		return err
	}
	for k := 0; ; k++ {
		f := frames[k%len(frames)]
		pts := time.Duration(k/len(frames))*p.clip.Loop + f.PTS
		due := start.Add(pts)
		if f.Key && !due.Before(end) {
			break // stop at a fragment boundary
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		lag := now.Sub(due)
		tc := base + pts.Milliseconds()
		mk = mk[:0]
		if k == 0 {
			mk = append(mk, header...)
		}
		var flags byte
		if f.Key {
			if cluster >= 0 {
				p.ended(cluster, now, false)
			}
			cluster = tc
			mk = mkv.AppendClusterStart(mk, uint64(tc))
			flags = mkv.FlagKey
		}
		mk = mkv.AppendSimpleBlockHeader(mk, 1, int16(tc-cluster), flags, len(f.Data))
		if err := write(mk, f.Data); err != nil {
			p.errorf("writing a frame: %v", err)
			return
		}
		p.mu.Lock()
		p.lags = append(p.lags, lag)
		p.mu.Unlock()
	}
	// The end of the stream, as AWS's producer ends it: END_OF_FRAGMENT
	// closes the last fragment; the body stays open until it is persisted.
	if cluster >= 0 {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		p.ended(cluster, time.Now(), true)
		if err := write(mkv.AppendTags(nil, mkv.SimpleTag{Name: mkv.TagEndOfFragment})); err != nil {
			p.errorf("writing the end of the stream: %v", err)
			return
		}
		select {
		case <-last:
		case <-p.respDone:
		case <-time.After(ackWait):
		case <-ctx.Done():
		}
	}
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write([]byte("0\r\n\r\n")); err != nil {
		return
	}
	select {
	case <-p.respDone:
	case <-time.After(ackWait):
		p.errorf("the server did not end its response within %s of the end of the body", ackWait)
	case <-ctx.Done():
	}
}
