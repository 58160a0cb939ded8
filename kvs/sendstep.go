package kvs

import (
	"bytes"
	"time"
)

// What goes out on the connection next, decided in one place for the
// connection's goroutine and for Put, which writes new frames itself
// while the connection keeps up.

// stepKind says what the connection does next.
type stepKind int

const (
	stepIdle   stepKind = iota // nothing to send now: wait to be woken
	stepWait                   // the service's limits: wait step.wait
	stepData                   // send step.chunk, bytes of the fragment at sendID
	stepHeader                 // send step.chunk, a new stream header
	stepEnd                    // send END_OF_FRAGMENT after the last fragment
	stepRotate                 // end the connection and open a new one
	stepAbort                  // start the connection over
	stepClose                  // closing, and everything is acknowledged
)

// step is the connection's next move.
type step struct {
	kind  stepKind
	chunk []byte
	wait  time.Duration
	start *Fragment // stepData: the fragment's first bytes
	endID uint64    // stepEnd: 1 + the fragment the tag ends
}

// nextStep decides what the connection sends next; mu is held. It is
// asked by the connection's loop and by Put (sendNow), so that a frame
// goes out from whichever runs first, in the same order either way.
func (p *Producer) nextStep(now time.Time) step {
	p.ackWait = false
	for {
		if p.abortSend {
			return step{kind: stepAbort}
		}
		f := p.buf.Get(p.sendID)
		if f == nil {
			if first := p.buf.First(); first != nil && first.ID > p.sendID {
				p.sendID, p.sendOff = first.ID, 0 // released or dropped meanwhile
				continue
			}
		}
		next := p.buf.Get(p.sendID + 1)
		switch {
		case f != nil && p.sendOff == 0 && f.Complete && next != nil && (f.Acked == AckPersisted || f.Acked == AckError || f.Damaged):
			p.sendID++ // the service has it, or refused it for good, or it cannot be read: do not send it
			continue
		case f != nil && p.sendOff == 0 && f.Size > 0 && f.Header != nil && !sameHeader(f.Header, p.sent):
			// The tracks changed: a new header, on the same connection.
			return step{kind: stepHeader, chunk: f.Header}
		case f != nil && p.sendOff < f.Size:
			if p.sendOff == 0 {
				switch wait := p.startWait(now); {
				case wait < 0:
					// Too many fragments out without their BUFFERING: an
					// ack wakes the loop, and the watchdog ends a wait
					// that goes stale.
					p.ackWait = true
					return step{kind: stepIdle}
				case wait > 0:
					return step{kind: stepWait, wait: wait}
				}
			}
			data, err := p.buf.Read(f, p.sendOff)
			if err != nil {
				p.damaged(f, err)
				continue
			}
			chunk, wait := p.take(data, now)
			if wait > 0 {
				return step{kind: stepWait, wait: wait}
			}
			st := step{kind: stepData, chunk: chunk}
			if p.sendOff == 0 {
				st.start = f
			}
			return st
		case f != nil && f.Complete && next != nil:
			if now.Sub(p.opened) > p.maxAge {
				return step{kind: stepRotate}
			}
			p.sendID, p.sendOff = p.sendID+1, 0
			continue
		case f != nil && f.Complete && p.sendOff >= f.Size:
			// The last fragment buffered, complete and sent whole. One
			// from an earlier run whose successor never reached the disk
			// does not end with END_OF_FRAGMENT: the service cannot know
			// it is complete until something follows it, so the tag goes
			// out on the connection.
			if p.ended != f.ID+1 && !bytes.HasSuffix(f.Data, endOfFragment) && (f.Data != nil || f.Recovered) {
				if data, err := p.buf.Read(f, 0); err == nil && !bytes.HasSuffix(data, endOfFragment) {
					return step{kind: stepEnd, chunk: endOfFragment, endID: f.ID + 1}
				}
			}
			p.sentWhole(f.ID+1, now) // its PERSISTED is due
		}
		if n, _ := p.buf.Size(); p.closing && n == 0 {
			return step{kind: stepClose}
		}
		return step{kind: stepIdle}
	}
}

// wrote records that n bytes of st went out; mu is held.
func (p *Producer) wrote(st step, n int, now time.Time) {
	switch st.kind {
	case stepHeader:
		if n == len(st.chunk) {
			p.sent = st.chunk
		}
	case stepEnd:
		p.ended = st.endID
	case stepData:
		if st.start != nil && n > 0 {
			p.sending(st.start, now)
		}
		p.sendOff += n
	}
	p.stats.BytesSent += int64(n)
}

// startWrite marks a blocking write under way, which the watchdog times;
// mu is held.
func (p *Producer) startWrite(now time.Time) {
	p.writerBusy, p.writing, p.writeSince = true, true, now
	p.armDeadline(now)
}

func (p *Producer) endWrite() {
	p.writerBusy, p.writing, p.writeSince = false, false, time.Time{}
}

// sendNow writes what the connection would send next straight to the
// socket, without blocking, from Put; mu is held. It reports whether the
// connection's loop must be woken for the rest: it is not when the socket
// took everything, which is the usual case for a live stream.
func (p *Producer) sendNow() bool {
	sess := p.live
	if sess == nil || p.writerBusy {
		return true
	}
	now := p.cfg.Now()
	for {
		if sess.Pending() {
			return true
		}
		st := p.nextStep(now)
		switch st.kind {
		case stepIdle:
			return false
		case stepData:
			if !sess.TryWrite(st.chunk) {
				p.tokens += float64(len(st.chunk)) // not sent after all
				return true
			}
			p.wrote(st, len(st.chunk), now)
		default:
			return true
		}
	}
}
