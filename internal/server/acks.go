package server

import (
	"net/http"
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

// writeAcks owns the response: the 200 header once the body has started
// (so that Go has answered Expect: 100-continue first), then the acks,
// each line whole and flushed at once, and IDLE while no data arrives. It
// also ends the session when the stream is deleted (gone).
func (in *ingest) writeAcks(w http.ResponseWriter, rc *http.ResponseController, gone <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var line []byte
	var batch []kvs.Ack
	wroteHeader, failed := false, false
	writeHeader := func() {
		if !wroteHeader {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_ = rc.Flush()
			wroteHeader = true
		}
	}
	// write sends lines, at most maxAckWrite bytes at a time; after a
	// failure (the producer went away) acks are dropped.
	write := func(acks []kvs.Ack) {
		line = line[:0]
		for i, a := range acks {
			n := len(line)
			line = a.AppendJSON(line)
			if len(line) > maxAckWrite && n > 0 {
				in.flushAcks(w, rc, line[:n], &failed)
				line = append(line[:0], line[n:]...)
			}
			in.s.metrics.acks.WithLabelValues(string(acks[i].EventType)).Inc()
		}
		in.flushAcks(w, rc, line, &failed)
	}
	idle := time.NewTicker(in.s.cfg.IdleInterval)
	defer idle.Stop()
	for {
		select {
		case <-in.started:
			writeHeader()
			in.started = nil // a nil channel never fires again
		case <-gone:
			gone = nil
			in.deleted.Store(true)
			_ = rc.SetReadDeadline(time.Now())
		case <-in.acks.kick:
			for {
				var closed bool
				batch, closed = in.acks.take(batch)
				if closed {
					writeHeader()
					return
				}
				if len(batch) == 0 {
					break
				}
				writeHeader()
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

// flushAcks writes ack lines and flushes them. A producer that stops
// reading acks must not stall ingest: the write has a deadline.
func (in *ingest) flushAcks(w http.ResponseWriter, rc *http.ResponseController, lines []byte, failed *bool) {
	if *failed || len(lines) == 0 {
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(in.s.cfg.IdleTimeout))
	if _, err := w.Write(lines); err != nil {
		*failed = true
		return
	}
	if err := rc.Flush(); err != nil {
		*failed = true
	}
}
