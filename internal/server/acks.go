package server

import (
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// ackQueue passes a session's acks from the goroutine that reads its body to
// the one that writes its response. Acks that pile up while one is being
// written go out together (RECEIVED and PERSISTED of a fragment, usually):
// one write and one flush instead of one each.
type ackQueue struct {
	mu      sync.Mutex
	pending []kvs.Ack
	closed  bool
	kick    chan struct{}
}

func newAckQueue() *ackQueue { return &ackQueue{kick: make(chan struct{}, 1)} }

func (q *ackQueue) push(a kvs.Ack) {
	q.mu.Lock()
	q.pending = append(q.pending, a)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// take moves the pending acks to dst; closed reports the end of the
// session once nothing is pending.
func (q *ackQueue) take(dst []kvs.Ack) (acks []kvs.Ack, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dst = append(dst[:0], q.pending...)
	clear(q.pending)
	q.pending = q.pending[:0]
	return dst, q.closed && len(dst) == 0
}

// close ends the session: the writer sends what is pending and returns.
func (q *ackQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// maxAckWrite bounds one write of ack lines: AWS's C producer rejects a
// delivery of more than 1024 bytes.
const maxAckWrite = 1000

// writeAcks owns the response on the session's connection: the 200 header
// once the body has started (after any 100 Continue), then the acks as
// chunks, each ack line whole, flushed at once, and IDLE while no data
// arrives; at the end the last chunk. It also ends the session when the
// stream is deleted (gone).
func (in *ingest) writeAcks(gone <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var out []byte
	var batch []kvs.Ack
	wroteHeader, failed := false, false
	send := func(b []byte) {
		if failed || len(b) == 0 {
			return
		}
		// A producer that stops reading acks must not stall ingest.
		_ = in.conn.SetWriteDeadline(time.Now().Add(in.s.cfg.IdleTimeout))
		if _, err := in.conn.Write(b); err != nil {
			failed = true
		}
	}
	header := func() {
		if !wroteHeader {
			out = append(out[:0], in.respHeader...)
			send(out)
			wroteHeader = true
		}
	}
	// write sends acks as chunks of at most maxAckWrite bytes of lines.
	write := func(acks []kvs.Ack) {
		header()
		out = out[:0]
		chunkStart, lineStart := -1, 0
		for _, a := range acks {
			if chunkStart < 0 {
				chunkStart = len(out)
				out = append(out, "000\r\n"...) // size, filled in below
				lineStart = len(out)
			}
			n := len(out)
			out = a.AppendJSON(out)
			if len(out)-lineStart > maxAckWrite && n > lineStart {
				// This line goes in the next chunk.
				line := append([]byte(nil), out[n:]...)
				out = endChunk(out[:n], chunkStart, lineStart)
				chunkStart = len(out)
				out = append(out, "000\r\n"...)
				lineStart = len(out)
				out = append(out, line...)
			}
			in.s.metrics.acks.WithLabelValues(string(a.EventType)).Inc()
		}
		if chunkStart >= 0 {
			out = endChunk(out, chunkStart, lineStart)
		}
		send(out)
	}
	idle := time.NewTicker(in.s.cfg.IdleInterval)
	defer idle.Stop()
	for {
		select {
		case <-in.started:
			header()
			in.started = nil // a nil channel never fires again
		case <-gone:
			gone = nil
			in.deleted.Store(true)
			_ = in.conn.SetReadDeadline(time.Now())
		case <-in.acks.kick:
			for {
				var closed bool
				batch, closed = in.acks.take(batch)
				if closed {
					header()
					send([]byte("0\r\n\r\n"))
					return
				}
				if len(batch) == 0 {
					break
				}
				write(batch)
			}
		case <-idle.C:
			if !wroteHeader || time.Since(time.Unix(0, in.lastData.Load())) < in.s.cfg.IdleInterval {
				continue
			}
			write([]kvs.Ack{{EventType: kvs.AckIdle}})
		}
	}
}

// endChunk fills in the size of the chunk at start (three hex digits; a
// chunk's lines are at most a few kilobytes) and ends it.
func endChunk(b []byte, start, data int) []byte {
	const hex = "0123456789abcdef"
	n := len(b) - data
	b[start], b[start+1], b[start+2] = hex[n>>8&0xf], hex[n>>4&0xf], hex[n&0xf]
	return append(b, "\r\n"...)
}
