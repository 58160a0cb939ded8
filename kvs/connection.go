package kvs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// released reports whether the service has a fragment for good.
func (p *Producer) released(f *Fragment) bool {
	if !f.Complete {
		return false
	}
	switch f.Acked {
	case AckPersisted, AckError:
		return true
	case AckReceived:
		return p.retention == 0
	}
	return false
}

// finished reports whether Close was called and everything is
// acknowledged.
func (p *Producer) finished() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, _ := p.buf.Size()
	return p.closing && n == 0
}

// run owns the connection: set-up, streaming, reconnecting with back-off.
func (p *Producer) run() {
	defer close(p.done)
	delay := p.cfg.RetryMin
	var failingSince time.Time
	endpoint := ""
	for p.ctx.Err() == nil && !p.finished() {
		if p.cfg.GiveUpAfter > 0 && !failingSince.IsZero() && p.cfg.Now().Sub(failingSince) > p.cfg.GiveUpAfter {
			p.setFatal(fmt.Errorf("could not stream for %s; giving up", p.cfg.GiveUpAfter))
			return
		}
		if endpoint == "" {
			ep, retention, err := p.cfg.ControlPlane.PrepareStream(p.ctx, p.cfg.Stream)
			if err != nil {
				if errors.Is(err, ErrAuth) || isPermanent(err) {
					p.setFatal(err)
					return
				}
				if failingSince.IsZero() {
					failingSince = p.cfg.Now()
				}
				p.event(Event{Type: EventDisconnected, Err: err, Message: fmt.Sprintf("cannot reach Kinesis Video Streams (%v); retrying in %s", err, delay.Round(time.Millisecond))})
				if !p.sleep(&delay) {
					return
				}
				continue
			}
			endpoint = ep
			p.mu.Lock()
			p.retention = retention
			p.mu.Unlock()
			p.mu.Lock()
			if retention == 0 {
				p.warnOnce("retention", "the stream keeps no data (DataRetentionInHours 0): nothing can be played back later, and fragments count as delivered when RECEIVED")
			}
			p.mu.Unlock()
			p.flush()
		}
		creds, err := p.cfg.Credentials.Retrieve(p.ctx)
		if err != nil {
			p.setFatal(fmt.Errorf("no AWS credentials: %w (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)", err))
			return
		}
		maxAge := p.cfg.MaxConnectionAge
		if creds.CanExpire {
			maxAge = min(maxAge, creds.Expires.Sub(p.cfg.Now())-time.Minute)
		}
		sess, err := OpenSession(p.ctx, SessionConfig{Endpoint: endpoint, Stream: p.cfg.Stream.Name, Region: p.cfg.Region,
			Credentials: creds, HTTPClient: p.cfg.HTTPClient, Now: p.cfg.Now})
		if err != nil {
			p.setFatal(err)
			return
		}
		worked, err := p.stream(sess, endpoint, max(maxAge, time.Second))
		if worked {
			failingSince, delay = time.Time{}, p.cfg.RetryMin
		}
		switch {
		case err == nil || errors.Is(err, errRotate):
			continue
		case errors.Is(err, ErrAuth):
			p.setFatal(fmt.Errorf("the service refused the credentials: %w", err))
			return
		}
		if p.ctx.Err() != nil || p.finished() {
			return
		}
		if failingSince.IsZero() {
			failingSince = p.cfg.Now()
		}
		p.mu.Lock()
		p.stats.Reconnects++
		p.stats.Connected = false
		p.mu.Unlock()
		p.event(Event{Type: EventDisconnected, Err: err, Message: fmt.Sprintf("connection lost (%v); reconnecting in %s and resending what was not persisted", err, delay.Round(time.Millisecond))})
		if !worked {
			endpoint = "" // ask for the endpoint again; it may have moved
		}
		if !p.sleep(&delay) {
			return
		}
	}
}

// sleep waits the current back-off (with jitter) and doubles it.
func (p *Producer) sleep(delay *time.Duration) bool {
	d := *delay/2 + rand.N(*delay/2+1)
	*delay = min(*delay*2, p.cfg.RetryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// isPermanent reports set-up errors that retrying cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, ErrNoStream) || errors.Is(err, ErrStreamDeleting)
}

var errRotate = errors.New("rotating the connection")

// stream runs one session: the header, then every fragment not yet
// acknowledged, then new bytes as they come. It returns whether the session
// worked (the service acknowledged data) and why it ended.
func (p *Producer) stream(sess *Session, endpoint string, maxAge time.Duration) (worked bool, err error) {
	acksDone := make(chan struct{})
	var gotAck atomic.Bool
	go func() {
		defer close(acksDone)
		for a := range sess.Acks() {
			// Only data the service took for good makes a session count
			// as working; BUFFERING comes before an ERROR, too.
			if a.EventType == AckReceived || a.EventType == AckPersisted {
				gotAck.Store(true)
			}
			p.handleAck(a)
		}
	}()
	watchdogDone := make(chan struct{})
	stopWatchdog := make(chan struct{})
	go p.watchdog(sess, stopWatchdog, watchdogDone)
	defer func() {
		close(stopWatchdog)
		<-watchdogDone
		sess.Abort()
		<-acksDone
		worked = worked || gotAck.Load()
		p.mu.Lock()
		if p.staleErr != nil {
			err = p.staleErr
		}
		p.mu.Unlock()
	}()
	opened := p.cfg.Now()
	p.mu.Lock()
	if f := p.buf.First(); f != nil {
		p.sendID = f.ID
	} else {
		p.sendID = 0
		if l := p.buf.Last(); l != nil {
			p.sendID = l.ID + 1
		}
	}
	p.sendOff, p.abortSend, p.awaitingFrom, p.staleErr = 0, false, time.Time{}, nil
	p.writeSince = p.cfg.Now()
	p.stats.Connected = true
	// Every connection starts with the header of the first fragment it
	// sends (a resend after a new header mid-stream uses the old one).
	sent := p.path.header
	if f := p.buf.Get(p.sendID); f != nil && f.Header != nil {
		sent = f.Header
	}
	p.mu.Unlock()
	if _, err := sess.Write(sent); err != nil {
		return false, p.sessionErr(sess, err)
	}
	p.mu.Lock()
	p.writeSince = time.Time{}
	p.mu.Unlock()
	p.event(Event{Type: EventConnected, Message: "streaming to " + endpoint})
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		if p.abortSend {
			p.mu.Unlock()
			return false, errors.New("starting the connection over")
		}
		f := p.buf.Get(p.sendID)
		if f == nil {
			if first := p.buf.First(); first != nil && first.ID > p.sendID {
				p.sendID, p.sendOff = first.ID, 0 // released or dropped meanwhile
				p.mu.Unlock()
				continue
			}
		}
		next := p.buf.Get(p.sendID + 1)
		var chunk []byte
		header := false
		switch {
		case f != nil && p.sendOff == 0 && f.Complete && next != nil && (f.Acked == AckPersisted || f.Acked == AckError):
			p.sendID++ // the service has it, or refused it for good: do not send it again
			p.mu.Unlock()
			continue
		case f != nil && p.sendOff == 0 && len(f.Data) > 0 && f.Header != nil && !sameHeader(f.Header, sent):
			// The tracks changed: a new header, on the same connection.
			chunk, header = f.Header, true
			p.writing, p.writeSince = true, p.cfg.Now()
		case f != nil && p.sendOff < len(f.Data):
			chunk = f.Data[p.sendOff:]
			if p.sendOff == 0 && p.awaitingFrom.IsZero() {
				p.awaitingFrom = p.cfg.Now()
			}
			p.writing, p.writeSince = true, p.cfg.Now()
		case f != nil && f.Complete && next != nil:
			p.sendID, p.sendOff = p.sendID+1, 0
			if p.cfg.Now().Sub(opened) > maxAge {
				p.mu.Unlock()
				p.closeGracefully(sess)
				return true, errRotate
			}
			p.mu.Unlock()
			continue
		}
		closing := p.closing
		p.mu.Unlock()

		if chunk != nil {
			n, err := sess.Write(chunk)
			p.mu.Lock()
			if header {
				sent = chunk
			} else {
				p.sendOff += n
			}
			p.stats.BytesSent += int64(n)
			p.writing, p.writeSince = false, time.Time{}
			p.mu.Unlock()
			if err != nil {
				return false, p.sessionErr(sess, err)
			}
			continue
		}
		if closing && p.finished() {
			p.closeGracefully(sess)
			return true, nil
		}
		select {
		case <-p.notify:
		case <-tick.C:
		case <-sess.Done():
			return false, p.sessionErr(sess, sess.Err())
		case <-p.ctx.Done():
			return false, p.ctx.Err()
		}
	}
}

// watchdog aborts a session that has gone stale: data sent without any
// acknowledgement, or a write the connection does not take, for AckTimeout.
func (p *Producer) watchdog(sess *Session, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-sess.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		now := p.cfg.Now()
		var stale error
		switch {
		case !p.awaitingFrom.IsZero() && now.Sub(p.awaitingFrom) > p.cfg.AckTimeout:
			stale = fmt.Errorf("no acknowledgement for %s after sending a fragment: the connection is stale", p.cfg.AckTimeout)
		case !p.writeSince.IsZero() && now.Sub(p.writeSince) > p.cfg.AckTimeout:
			stale = fmt.Errorf("the connection has taken no data for %s: it is stale", p.cfg.AckTimeout)
		}
		if stale != nil {
			p.staleErr = stale
		}
		p.mu.Unlock()
		if stale != nil {
			sess.Abort()
			return
		}
	}
}

// closeGracefully ends the body and waits briefly for the response to end.
func (p *Producer) closeGracefully(sess *Session) {
	_ = sess.CloseBody()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-sess.Done():
	case <-t.C:
	}
}

// sessionErr prefers the reason the response ended over a write error.
func (p *Producer) sessionErr(sess *Session, err error) error {
	select {
	case <-sess.Done():
		if e := sess.Err(); e != nil && !errors.Is(e, errAborted) {
			return e
		}
	case <-time.After(100 * time.Millisecond):
	}
	return err
}

// maxErrorStreak is how many ERROR acks in a row, with no data
// acknowledged between them, make the producer give up.
const maxErrorStreak = 5

func (p *Producer) handleAck(a Ack) {
	p.mu.Lock()
	now := p.cfg.Now()
	switch a.EventType {
	case AckIdle:
		p.awaitingFrom = time.Time{}
	case AckBuffering, AckReceived, AckPersisted:
		p.awaitingFrom = time.Time{}
		if a.EventType != AckBuffering {
			p.errStreak = 0
		}
		f := p.buf.ByTimecode(a.FragmentTimecode)
		if f != nil && rank(a.EventType) > rank(f.Acked) && f.Acked != AckError {
			f.Acked = a.EventType
			if a.EventType == AckPersisted && !f.CompletedAt.IsZero() {
				p.stats.LastAckLatency = now.Sub(f.CompletedAt)
			}
		}
		switch a.EventType {
		case AckPersisted:
			p.stats.Persisted++
			p.lastProgress = now
		case AckReceived:
			p.stats.Received++
			p.lastProgress = now
		}
		p.queue(Event{Type: EventAck, Ack: a})
	case AckError:
		p.handleErrorAck(a)
	}
	p.buf.Release(p.released, p.sendID)
	p.mu.Unlock()
	p.flush()
	p.wake()
}

// handleErrorAck applies an ERROR ack; mu is held.
func (p *Producer) handleErrorAck(a Ack) {
	info := LookupAckError(a.ErrorID)
	p.stats.Errors++
	p.errStreak++
	msg := fmt.Sprintf("Kinesis Video Streams error %d %s: %s; %s", a.ErrorID, info.Code, info.Cause, info.Fix)
	// An ERROR names its fragment by timecode; one that does not is about
	// the oldest, as the producer SDK takes it.
	f := p.buf.ByTimecode(a.FragmentTimecode)
	if !a.HasTimecode || f == nil {
		f = p.buf.First()
	}
	switch {
	case f != nil && !info.Retriable && f.Acked != AckError:
		f.Acked = AckError // it cannot succeed: never send it again
		p.stats.Rejected++
		p.stats.Lost.Refused += int64(f.Frames)
		if f == p.buf.Last() && !f.Complete {
			f.Complete = true
			p.path.refused() // the rest of it would be refused too
		}
		msg += "; the fragment is dropped"
	case info.Retriable:
		msg += "; it is sent again"
	}
	p.queue(Event{Type: EventAckError, Ack: a, Message: msg})
	// The service ends the connection after an ERROR; so does the
	// producer, and starts over from the first fragment not persisted.
	p.abortSend = true
	if p.errStreak >= maxErrorStreak && p.fatal == nil {
		p.fatal = fmt.Errorf("the service refused the stream %d times in a row; last: %s", p.errStreak, msg)
		p.queue(Event{Type: EventFatal, Err: p.fatal, Message: p.fatal.Error()})
		p.cancel()
	}
}

func rank(e AckEvent) int {
	switch e {
	case AckBuffering:
		return 1
	case AckReceived:
		return 2
	case AckPersisted:
		return 3
	case AckError:
		return 4
	}
	return 0
}

// sameHeader reports whether two fragments' headers are the same slice
// (fragments under one header share it).
func sameHeader(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
