package kvs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/kvsgo/kvsgo/mkv"
)

// released reports whether the service has a fragment for good.
func (p *Producer) released(f *Fragment) bool {
	if !f.Complete {
		return false
	}
	if f.Damaged {
		return true // it cannot be sent
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
				if p.ctx.Err() != nil {
					// Stopped meanwhile (closed, or the credentials were
					// refused elsewhere): not a network failure to retry.
					return
				}
				if errors.Is(err, ErrAuth) || isPermanent(err) {
					p.setFatal(err)
					return
				}
				if refusedCredentials(err) {
					p.setFatal(credentialsError(err))
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
		if err != nil && retryableCredentials(err) && p.ctx.Err() == nil {
			if failingSince.IsZero() {
				failingSince = p.cfg.Now()
			}
			p.event(Event{Type: EventDisconnected, Err: err, Message: fmt.Sprintf("cannot get AWS credentials (%v); retrying in %s", err, delay.Round(time.Millisecond))})
			if !p.sleep(&delay) {
				return
			}
			continue
		}
		if err != nil {
			p.setFatal(credentialsError(err))
			return
		}
		maxAge := connectionAge(creds, p.cfg.Now(), p.cfg.MaxConnectionAge)
		p.mu.Lock()
		skew := p.skew
		p.mu.Unlock()
		sess, err := OpenSession(p.ctx, SessionConfig{Endpoint: endpoint, Stream: p.cfg.Stream.Name, Region: p.cfg.Region,
			Credentials: creds, HTTPClient: p.cfg.HTTPClient, Now: p.cfg.Now, ClockOffset: skew})
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
		case errors.Is(err, ErrClockSkew):
			// Signed again with the service's time, as the AWS SDKs do; the
			// next refusal with that time is the credentials'.
			if s, ok := sess.Skew(); ok && s != skew {
				p.mu.Lock()
				p.skew = s
				p.mu.Unlock()
				continue
			}
			p.setFatal(fmt.Errorf("the service refused the credentials: %w", err))
			return
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

// awaited is a fragment sent on the current connection whose own
// acknowledgements are still due: BUFFERING within AckTimeout of its first
// bytes, PERSISTED (RECEIVED without retention) within AckTimeout of its
// last. An ack for a later fragment does not stand in for it: the service
// may have lost this one, and only a new connection sends it again.
type awaited struct {
	id      uint64
	tc      int64
	firstBy time.Time // its first bytes went out; zero once it has an ack
	finalBy time.Time // it was sent whole; zero until then
}

// endOfFragment is the END_OF_FRAGMENT tag that lets the service complete
// a fragment without waiting for the next one.
var endOfFragment = mkv.AppendTags(nil, mkv.SimpleTag{Name: mkv.TagEndOfFragment})

// maxUnacked is how many fragments may go out before the first of them
// has its BUFFERING: a backlog sent faster than the uplink takes it would
// otherwise wait in socket buffers for longer than AckTimeout.
const maxUnacked = 2

// rateWindow is the window the fragment rate is kept over: a little more
// than the service's second.
const rateWindow = 1100 * time.Millisecond

// fragmentStart is a fragment that started going out, for the service's
// fragment rate. The service counts fragments by when it receives them,
// and a loaded machine or a network can bunch them on the way: so the
// window starts at the fragment's first ack (the service stamps the
// fragment, then acknowledges it) rather than when it was sent. A
// fragment MaxFragmentRate back then reached the service at least
// rateWindow before the next one can, however they were delayed.
type fragmentStart struct {
	tc    int64
	at    time.Time // sent; its first ack once acked
	acked bool
}

// stream runs one session: the header, then every fragment not yet
// acknowledged, then new bytes as they come. It returns whether the session
// worked (the service acknowledged data) and why it ended.
//
// While the connection keeps up, the bytes of new frames do not come
// through here: Put writes them to the socket itself (sendNow). This loop
// sends the header, the backlog, what the socket did not take at once, and
// whatever waits for the service's limits, and it is woken only for those.
func (p *Producer) stream(sess *Session, endpoint string, maxAge time.Duration) (worked bool, err error) {
	acksDone := make(chan struct{})
	var gotAck atomic.Bool
	go func() {
		defer close(acksDone)
		checked := false
		for a := range sess.Acks() {
			if !checked {
				checked = true
				p.checkClock(sess)
			}
			// Only data the service took for good makes a session count
			// as working; BUFFERING comes before an ERROR, too.
			if a.EventType == AckReceived || a.EventType == AckPersisted {
				gotAck.Store(true)
			}
			p.handleAck(a)
		}
	}()
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	watchdogDone := make(chan struct{})
	stopWatchdog := make(chan struct{})
	defer func() {
		p.mu.Lock()
		p.live = nil // Put writes no more to it
		p.mu.Unlock()
		close(stopWatchdog)
		<-watchdogDone
		sess.Abort()
		<-acksDone
		worked = worked || gotAck.Load()
		p.mu.Lock()
		switch e := sess.Err(); {
		case errors.Is(e, ErrRefused):
			err = e // the service's answer says more than a stale connection
		case p.staleErr != nil:
			err = p.staleErr
		}
		p.awaiting = p.awaiting[:0]
		p.deadline, p.deadlineArmed = nil, false
		p.mu.Unlock()
	}()
	p.mu.Lock()
	now := p.cfg.Now()
	if f := p.buf.First(); f != nil {
		p.sendID = f.ID
	} else {
		p.sendID = 0
		if l := p.buf.Last(); l != nil {
			p.sendID = l.ID + 1
		}
	}
	p.sendOff, p.abortSend, p.staleErr = 0, false, nil
	p.awaiting = p.awaiting[:0]
	p.deadline, p.deadlineArmed = deadline, false
	p.opened, p.maxAge, p.ended = now, maxAge, 0
	p.writeSince = now
	// What the old connection sent without an ack reached the service, if
	// at all, before now.
	for i := range p.starts {
		if !p.starts[i].acked {
			p.starts[i].at, p.starts[i].acked = now, true
		}
	}
	p.armDeadline(now)
	p.stats.Connected = true
	// Every connection starts with the header of the first fragment it
	// sends (a resend after a new header mid-stream uses the old one).
	p.sent = p.path.header
	if f := p.buf.Get(p.sendID); f != nil && f.Header != nil {
		p.sent = f.Header
	}
	sent := p.sent
	p.mu.Unlock()
	go p.watchdog(sess, deadline, stopWatchdog, watchdogDone)
	if _, err := sess.Write(sent); err != nil {
		return false, p.sessionErr(sess, err)
	}
	p.mu.Lock()
	p.writeSince = time.Time{}
	p.live = sess
	p.mu.Unlock()
	p.event(Event{Type: EventConnected, Message: "streaming to " + endpoint})
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	defer pause.Stop()
	for {
		p.mu.Lock()
		now := p.cfg.Now()
		if sess.Pending() {
			// What the socket did not take when Put wrote it.
			p.startWrite(now)
			p.mu.Unlock()
			err := sess.Flush()
			p.mu.Lock()
			p.endWrite()
			p.mu.Unlock()
			if err != nil {
				return false, p.sessionErr(sess, err)
			}
			continue
		}
		st := p.nextStep(now)
		var timer <-chan time.Time
		switch st.kind {
		case stepAbort:
			p.mu.Unlock()
			return false, errors.New("starting the connection over")
		case stepRotate, stepClose:
			p.live = nil
			p.mu.Unlock()
			p.closeGracefully(sess)
			if st.kind == stepRotate {
				return true, errRotate
			}
			return true, nil
		case stepData, stepHeader, stepEnd:
			if st.start != nil {
				p.sending(st.start, now)
				st.start = nil
			}
			p.startWrite(now)
			p.mu.Unlock()
			n, err := sess.Write(st.chunk)
			p.mu.Lock()
			p.wrote(st, n, now)
			p.endWrite()
			p.mu.Unlock()
			if err != nil {
				return false, p.sessionErr(sess, err)
			}
			continue
		case stepWait:
			// The service's limits: the next fragment's turn, or the bytes
			// allowed to build up.
			pause.Reset(st.wait)
			timer = pause.C
		case stepIdle:
			// New bytes (that Put could not write), an ack awaited, Close,
			// or the connection's end wake the loop.
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-timer:
		case <-sess.Done():
			return false, p.sessionErr(sess, sess.Err())
		case <-p.ctx.Done():
			return false, p.ctx.Err()
		}
		if timer != nil {
			pause.Stop()
		}
	}
}

// checkClock tells the user once when this machine's clock is far from
// the service's: the fragments' timecodes (ABSOLUTE, from this clock) are
// that far off in the stream.
func (p *Producer) checkClock(sess *Session) {
	skew, ok := sess.Skew()
	if !ok || (skew < time.Minute && skew > -time.Minute) {
		return
	}
	// The Date header has whole seconds: round to ten.
	what := fmt.Sprintf("%s behind", skew.Round(10*time.Second))
	if skew < 0 {
		what = fmt.Sprintf("%s ahead of", (-skew).Round(10*time.Second))
	}
	p.mu.Lock()
	p.warnOnce("clock", fmt.Sprintf("this machine's clock is %s the service's (its Date header): the video's timestamps come from this clock and are that far off; requests are signed with the service's time. Set the clock right (NTP, chrony, timedatectl)", what))
	p.mu.Unlock()
	p.flush()
}

// startWait says whether a new fragment may start going out now: 0 yes,
// how long to wait for the service's fragment rate, or -1 to wait for an
// ack (too many fragments out without their BUFFERING). mu is held.
func (p *Producer) startWait(now time.Time) time.Duration {
	unacked := 0
	for _, a := range p.awaiting {
		if !a.firstBy.IsZero() {
			unacked++
		}
	}
	if unacked >= maxUnacked {
		return -1
	}
	if n := p.cfg.MaxFragmentRate; len(p.starts) >= n {
		s := p.starts[len(p.starts)-n]
		if !s.acked {
			return -1
		}
		if d := s.at.Add(rateWindow).Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// startAcked moves a fragment's rate window to its first ack; mu is held.
func (p *Producer) startAcked(tc int64, now time.Time) {
	for i := range p.starts {
		if s := &p.starts[i]; s.tc == tc && !s.acked {
			s.at, s.acked = now, true
		}
	}
}

// sending records that fragment f's first bytes go out now; mu is held.
func (p *Producer) sending(f *Fragment, now time.Time) {
	p.starts = append(p.starts, fragmentStart{tc: f.Timecode, at: now})
	if n := p.cfg.MaxFragmentRate; len(p.starts) > n {
		p.starts = append(p.starts[:0], p.starts[len(p.starts)-n:]...)
	}
	// The fragments before it are now whole on the connection: the
	// service completes a fragment when the next one starts.
	p.sentWhole(f.ID, now)
	p.awaiting = append(p.awaiting, awaited{id: f.ID, tc: f.Timecode, firstBy: now})
	p.armDeadline(now)
}

// sentWhole starts the PERSISTED deadline of the fragments before id; mu
// is held.
func (p *Producer) sentWhole(id uint64, now time.Time) {
	for i := range p.awaiting {
		if a := &p.awaiting[i]; a.id < id && a.finalBy.IsZero() {
			a.finalBy = now
			p.armDeadline(now)
		}
	}
}

// take returns as much of data as the service's bandwidth allows now, or
// how long to wait for it; mu is held.
func (p *Producer) take(data []byte, now time.Time) ([]byte, time.Duration) {
	rate := float64(p.cfg.MaxBytesPerSecond)
	if p.tokensAt.IsZero() {
		p.tokens = rate // a second's worth to start with
	} else {
		p.tokens = min(rate, p.tokens+now.Sub(p.tokensAt).Seconds()*rate)
	}
	p.tokensAt = now
	if maxChunk := max(int(rate/8), 64<<10); len(data) > maxChunk {
		data = data[:maxChunk]
	}
	if need := float64(len(data)) - p.tokens; need > 0 {
		return nil, time.Duration(need/rate*float64(time.Second)) + time.Millisecond
	}
	p.tokens -= float64(len(data))
	return data, 0
}

// damaged drops a fragment whose bytes cannot be read back (a disk
// buffer's file failed its checksum, or the disk failed): it is never
// sent, and its frames count as lost; mu is held.
func (p *Producer) damaged(f *Fragment, err error) {
	f.Damaged, f.Complete = true, true
	p.stats.Lost.Torn += int64(f.Frames)
	p.stats.DroppedFragments++
	if p.sendOff > 0 {
		p.abortSend = true // part of it is on the connection
	}
	p.queue(Event{Type: EventDropped, Message: fmt.Sprintf("cannot read back the buffered fragment %d (%d frames): %v; it is skipped", f.Timecode, f.Frames, err)})
	p.buf.Release(p.released, p.sendID)
}

// watchdog aborts a session that has gone stale: a fragment sent without
// an acknowledgement of its own, or a write the connection does not take,
// for AckTimeout. It sleeps until the earliest such deadline (armDeadline),
// not on a ticker: a healthy stream wakes it about once per AckTimeout.
func (p *Producer) watchdog(sess *Session, deadline *time.Timer, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer deadline.Stop()
	for {
		select {
		case <-stop:
			return
		case <-sess.Done():
			return
		case <-deadline.C:
		}
		p.mu.Lock()
		p.deadlineArmed = false
		now := p.cfg.Now()
		stale := p.stale(now)
		if stale != nil {
			p.staleErr = stale
		} else {
			p.armDeadline(now)
		}
		p.mu.Unlock()
		if stale != nil {
			sess.Abort()
			return
		}
	}
}

// armDeadline sets the watchdog's timer to the earliest deadline, unless
// it is set already: a deadline set later is never earlier than those
// before it (each is its start plus AckTimeout), and the watchdog re-arms
// for what is left when it wakes. mu is held.
func (p *Producer) armDeadline(now time.Time) {
	if p.deadline == nil || p.deadlineArmed {
		return
	}
	var first time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	for _, a := range p.awaiting {
		earlier(a.firstBy)
		earlier(a.finalBy)
	}
	earlier(p.writeSince)
	if first.IsZero() {
		return
	}
	p.deadlineArmed = true
	// Just past the limit: stale is "longer than AckTimeout".
	p.deadline.Reset(max(first.Add(p.cfg.AckTimeout).Sub(now), 0) + time.Millisecond)
}

// stale says why the connection is stale, or nil; mu is held.
func (p *Producer) stale(now time.Time) error {
	limit := p.cfg.AckTimeout
	for _, a := range p.awaiting {
		switch {
		case !a.firstBy.IsZero() && now.Sub(a.firstBy) > limit:
			return fmt.Errorf("no acknowledgement for %s after sending a fragment (timecode %d): the connection is stale", limit, a.tc)
		case !a.finalBy.IsZero() && now.Sub(a.finalBy) > limit:
			return fmt.Errorf("no acknowledgement for %s that a fragment sent whole was persisted (timecode %d): the connection is stale", limit, a.tc)
		}
	}
	if !p.writeSince.IsZero() && now.Sub(p.writeSince) > limit {
		return fmt.Errorf("the connection has taken no data for %s: it is stale", limit)
	}
	return nil
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
	if a.HasTimecode {
		p.startAcked(a.FragmentTimecode, now)
	}
	switch a.EventType {
	case AckBuffering, AckReceived, AckPersisted:
		if a.EventType != AckBuffering {
			p.errStreak = 0
		}
		p.acknowledged(a)
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
	// The connection's loop needs the ack only when it waits for one, is
	// to start over, or is closing; otherwise it sleeps on.
	wake := p.ackWait || p.abortSend || p.closing || p.live == nil
	p.mu.Unlock()
	p.flush()
	if wake {
		p.wake()
	}
}

// acknowledged settles what a fragment's own ack makes due no more; mu is
// held.
func (p *Producer) acknowledged(a Ack) {
	final := a.EventType == AckPersisted || a.EventType == AckReceived && p.retention == 0
	for i := range p.awaiting {
		if p.awaiting[i].tc != a.FragmentTimecode {
			continue
		}
		if final {
			p.awaiting = append(p.awaiting[:i], p.awaiting[i+1:]...)
		} else {
			p.awaiting[i].firstBy = time.Time{}
		}
		return
	}
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
			p.buf.End()
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

// sameHeader reports whether two fragments' headers are the same:
// fragments under one header share the slice, and a restarted program's
// header is the same bytes when its tracks are.
func sameHeader(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || bytes.Equal(a, b))
}
