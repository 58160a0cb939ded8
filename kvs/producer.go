package kvs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// Producer streams frames to one Kinesis video stream over PutMedia. Put
// frames from one goroutine; Close at the end.
type Producer struct {
	cfg ProducerConfig
	log *slog.Logger

	mu         sync.Mutex
	buf        Buffer
	path       *framePath
	segmentUID [16]byte
	started    bool
	closing    bool
	// countedUnacked: Close counted what was left unacknowledged.
	countedUnacked bool
	fatal          error
	retention      int32
	stats          Stats
	warned         map[string]bool
	// what the connection is doing, guarded by mu
	sendID        uint64
	sendOff       int
	awaiting      []awaited // fragments sent on this connection and not yet acknowledged
	writeSince    time.Time // a Write to the connection under way since
	writing       bool      // the fragment at sendID is being written
	abortSend     bool
	live          *Session // the connection Put may write new frames to itself; nil when it may not
	writerBusy    bool     // the connection's loop is writing, outside mu
	ackWait       bool     // the connection's loop waits for an ack before it sends more
	sent          []byte   // the stream header last sent on the connection
	ended         uint64   // 1 + the fragment an END_OF_FRAGMENT tag was written after
	opened        time.Time
	maxAge        time.Duration
	deadline      *time.Timer // the watchdog's: the earliest ack or write deadline
	deadlineArmed bool
	staleErr      error
	lastProgress  time.Time // last RECEIVED or PERSISTED, or Close
	errStreak     int       // ERROR acks in a row
	pending       []Event   // events queued under mu, sent after it is released
	// the service's limits, kept across connections
	starts   []fragmentStart // the last MaxFragmentRate fragments that started going out
	tokens   float64         // bytes that may go out now
	tokensAt time.Time
	// skew is how far the service's clock is ahead of ours (its Date
	// header): PutMedia requests are signed with the service's time.
	skew time.Duration

	notify chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// bufferSink puts the frame path's fragments into the Buffer; mu is held.
type bufferSink struct{ p *Producer }

func (s bufferSink) startFragment(tc int64, header []byte) {
	p := s.p
	if last := p.buf.Last(); last != nil {
		last.CompletedAt = p.cfg.Now()
	}
	p.buf.Start(tc, header)
}

func (s bufferSink) appendFragment(b []byte) { s.p.buf.Append(b) }

func (s bufferSink) frameWritten(tc int64) {
	if l := s.p.buf.Last(); l != nil {
		l.Frames++
		l.End = max(l.End, tc)
	}
}

func (s bufferSink) endFragment() {
	if l := s.p.buf.Last(); l != nil && !l.Complete {
		s.p.buf.End()
		l.CompletedAt = s.p.cfg.Now()
	}
}

// NewProducer prepares the stream and starts the connection in the
// background. The tracks are the source's (at most 3); the first video
// track's key frames start fragments, and without video, fragments are
// AudioFragmentDuration long. With a buffer that holds fragments from an
// earlier run, tracks may be nil: the backlog goes out at once, and
// SetTracks starts the new video when the source knows its tracks.
func NewProducer(ctx context.Context, cfg ProducerConfig, tracks []media.Track) (*Producer, error) {
	cfg.defaults()
	if cfg.ControlPlane == nil || cfg.Credentials == nil {
		return nil, errors.New("kvs: ProducerConfig needs a ControlPlane and Credentials")
	}
	backlog := cfg.Buffer.Last()
	if tracks == nil && backlog == nil {
		return nil, errors.New("kvs: no tracks")
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Producer{cfg: cfg, log: cfg.Logger, buf: cfg.Buffer,
		warned: map[string]bool{}, notify: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	// Matroska forbids a zero SegmentUID; the KVS SDK makes a random one
	// per stream. It stays the same across new headers, and across
	// restarts with a disk buffer: the same camera then gives the same
	// header, and the connection goes from the backlog to the new video
	// without a new one.
	if backlog == nil || !segmentUIDOf(backlog.Header, &p.segmentUID) {
		_, _ = rand.Read(p.segmentUID[:])
	}
	p.path = newFramePath(pathConfig{Now: cfg.Now, Window: cfg.InterleaveWindow, Jump: cfg.DiscontinuityThreshold,
		AudioFragment: cfg.AudioFragmentDuration}, bufferSink{p}, &p.stats, p.warnOnce, p.queue)
	if backlog != nil {
		p.takeBacklog(backlog)
	}
	if tracks != nil {
		if err := p.path.setTracks(tracks, p.segmentUID); err != nil {
			cancel()
			return nil, fmt.Errorf("kvs: %w", err)
		}
	}
	p.trimOverflow() // a backlog past the limits (older than BufferDuration, say)
	p.flush()
	go p.run()
	return p, nil
}

// takeBacklog counts what the buffer holds from an earlier run, and makes
// the new video go on after it: its fragments' timecodes after the
// backlog's, so that one connection can send both in order (the service
// refuses a timecode lower than the previous one on a connection, 4004).
func (p *Producer) takeBacklog(last *Fragment) {
	for f := p.buf.First(); f != nil; f = p.buf.Get(f.ID + 1) {
		if f.Recovered {
			p.stats.Recovered++
			p.stats.RecoveredFrames += int64(f.Frames)
		}
	}
	p.path.continueAfter(last.Timecode, last.End)
	if now := p.cfg.Now().UnixMilli(); now < last.End {
		p.queue(Event{Type: EventWarning, Message: fmt.Sprintf(
			"this machine's clock (%s) is behind the video buffered on disk (up to %s): the new video is placed after it, so that the stream's timestamps stay in order; set the clock right (NTP)",
			time.UnixMilli(now).UTC().Format(time.RFC3339), time.UnixMilli(last.End).UTC().Format(time.RFC3339))})
	}
}

// segmentUIDOf finds the SegmentUID in a stream header.
func segmentUIDOf(header []byte, uid *[16]byte) bool {
	i := bytes.Index(header, []byte{0x73, 0xa4, 0x90})
	if i < 0 || len(header) < i+3+16 {
		return false
	}
	copy(uid[:], header[i+3:])
	return true
}

// SetTracks changes the stream's tracks: a source met a new header (a
// concatenated Matroska input, a camera that changed its picture size).
// What was put before goes out in its own fragments; the next fragment
// starts with a header carrying the new tracks and codec private data, on
// the same connection, and resends after a reconnect use the header each
// fragment belongs to. Calling it with the tracks already in use does
// nothing. It refuses what one stream cannot carry: more than 3 tracks,
// or a track's codec changing (Kinesis Video Streams players follow new
// codec private data, not a new codec).
func (p *Producer) SetTracks(tracks []media.Track) error {
	p.mu.Lock()
	err := p.setTracks(tracks)
	p.mu.Unlock()
	p.flush()
	p.wake()
	return err
}

func (p *Producer) setTracks(tracks []media.Track) error {
	if p.fatal != nil {
		return p.fatal
	}
	if p.closing {
		return errors.New("kvs: SetTracks after Close")
	}
	if len(tracks) > 3 {
		return fmt.Errorf("kvs: the input now has %d tracks: Kinesis Video Streams takes at most 3; start a new stream for it", len(tracks))
	}
	old := p.path.tracks
	if slices.EqualFunc(old, tracks, sameTrack) {
		return nil
	}
	for _, t := range tracks {
		for _, o := range old {
			if o.Kind == t.Kind && o.CodecID != t.CodecID {
				return fmt.Errorf("kvs: the input's %s changed from %s to %s mid-stream: a Kinesis video stream carries one codec per track; start a new stream (or restart kvsgo) for it", t.Kind, o.CodecID, t.CodecID)
			}
		}
	}
	if err := p.path.setTracks(tracks, p.segmentUID); err != nil {
		return fmt.Errorf("kvs: %w", err)
	}
	p.trimOverflow()
	if old != nil {
		p.log.Info("new stream header: the next fragment carries the new tracks", "tracks", len(tracks))
	}
	return nil
}

// sameTrack reports whether two tracks would give the same header.
func sameTrack(a, b media.Track) bool {
	return a.Number == b.Number && a.Kind == b.Kind && a.CodecID == b.CodecID && bytes.Equal(a.CodecPrivate, b.CodecPrivate) &&
		a.Name == b.Name && a.Width == b.Width && a.Height == b.Height && a.SampleRate == b.SampleRate && a.Channels == b.Channels
}

func (p *Producer) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Put adds a frame. It returns at once: the frame goes out on the
// connection as soon as the tracks' frames of its time are in and the
// connection takes it, and stays buffered until the service has persisted
// its fragment. Every frame is sent once at its own time, or counted in
// Stats.Lost with the reason. Put fails only when the producer has given
// up (see Err) or for a frame of a track the stream does not have.
func (p *Producer) Put(f media.Frame) error {
	p.mu.Lock()
	err := p.put(f)
	events := p.pending // usually none: one lock per frame
	p.pending = nil
	p.mu.Unlock()
	for _, e := range events {
		p.event(e)
	}
	return err
}

func (p *Producer) put(f media.Frame) error {
	if p.fatal != nil {
		return p.fatal
	}
	if p.closing {
		return errors.New("kvs: Put after Close")
	}
	if p.path.tracks == nil {
		return errors.New("kvs: Put before SetTracks")
	}
	now := p.cfg.Now()
	if !p.started {
		p.started = true
		p.stats.FirstFrameTime = now
	}
	p.stats.LastFrameTime = now
	before := p.stats.Fragments
	if err := p.path.put(f); err != nil {
		return fmt.Errorf("kvs: %w", err)
	}
	if p.stats.Fragments != before {
		p.trimOverflow()
	}
	if p.sendNow() {
		p.wake()
	}
	return nil
}

// AddLost counts frames that never reached Put: a source could not use
// them (the pictures before a camera's first key frame, a damaged input).
// They go into Stats.Lost beside the producer's own losses, so that one
// count says what of the input did not reach the service.
func (p *Producer) AddLost(l Losses) {
	p.mu.Lock()
	p.stats.Lost = p.stats.Lost.Add(l)
	p.mu.Unlock()
}

// memoryBound is a buffer that also keeps memory within a limit of its
// own (a disk buffer holding fragments it could not write).
type memoryBound interface{ overMemory() bool }

// trimOverflow drops the oldest whole fragments while the buffer holds
// more than its limits, and reports each one.
func (p *Producer) trimOverflow() {
	mem, _ := p.buf.(memoryBound)
	for {
		n, bytes := p.buf.Size()
		first, last := p.buf.First(), p.buf.Last()
		if n < 2 {
			return
		}
		span := time.Duration(last.Timecode-first.Timecode) * time.Millisecond
		overMemory := mem != nil && mem.overMemory()
		if bytes <= p.cfg.BufferBytes && span <= p.cfg.BufferDuration && !overMemory {
			return
		}
		f := p.buf.DropOldest()
		p.stats.DroppedFragments++
		p.stats.Lost.Overflow += int64(f.Frames)
		if f.ID == p.sendID && (p.sendOff > 0 || p.writing) {
			p.abortSend = true // half sent: the connection must start over
		}
		why := fmt.Sprintf("buffer full (%d fragments, %d MB, %s of video not yet persisted; the limits are %d MB and %s)",
			n, bytes>>20, span.Round(time.Second), p.cfg.BufferBytes>>20, p.cfg.BufferDuration)
		if overMemory {
			why = fmt.Sprintf("too much video kept in memory because the disk cannot be written (%d fragments buffered)", n)
		}
		p.queue(Event{Type: EventDropped, Message: fmt.Sprintf(
			"%s: dropped the oldest fragment (timecode %d, %s, %d frames); the service is not keeping up or cannot be reached",
			why, f.Timecode, time.UnixMilli(f.Timecode).UTC().Format("2006-01-02T15:04:05.000Z"), f.Frames)})
	}
}

// Stats returns the counters so far.
func (p *Producer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.BufferedFragments, s.BufferedBytes = p.buf.Size()
	if f, l := p.buf.First(), p.buf.Last(); f != nil {
		s.BufferedDuration = time.Duration(l.Timecode-f.Timecode) * time.Millisecond
	}
	if !s.FirstFrameTime.IsZero() {
		s.MediaSpan = s.LastFrameTime.Sub(s.FirstFrameTime)
	}
	return s
}

// Err returns why the producer gave up, or nil.
func (p *Producer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fatal
}

// Done is closed when the producer has stopped: after Close, or when it
// gave up.
func (p *Producer) Done() <-chan struct{} { return p.done }

// Close ends the stream: the last fragment is closed with an
// END_OF_FRAGMENT tag, and Close waits (at most CloseTimeout, or until ctx
// ends) for every fragment to be acknowledged.
func (p *Producer) Close(ctx context.Context) (Stats, error) {
	p.mu.Lock()
	p.lastProgress = p.cfg.Now()
	if !p.closing {
		p.closing = true
		// What waits in the interleaver goes out, and the last fragment
		// ends with an END_OF_FRAGMENT tag.
		if err := p.path.end(); err != nil {
			p.log.Warn("ending the last fragment", "err", err)
		}
		p.trimOverflow()
	}
	p.mu.Unlock()
	p.flush()
	p.wake()
	// Wait while there is progress. While the service cannot be reached,
	// the reconnect loop's own GiveUpAfter decides.
	// A timer to when the wait would have gone CloseTimeout without
	// progress; on waking it looks again at the progress since.
	stall := time.NewTimer(p.cfg.CloseTimeout)
	defer stall.Stop()
	var err error
wait:
	for {
		select {
		case <-p.done:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-stall.C:
			p.mu.Lock()
			left := p.cfg.CloseTimeout - p.cfg.Now().Sub(p.lastProgress)
			p.mu.Unlock()
			if left < 0 {
				err = fmt.Errorf("gave up waiting %s for the service to acknowledge the last fragments", p.cfg.CloseTimeout)
				break wait
			}
			stall.Reset(left + time.Millisecond)
		}
	}
	p.cancel()
	<-p.done
	p.mu.Lock()
	p.countUnacknowledged()
	p.mu.Unlock()
	st := p.Stats()
	if ferr := p.Err(); ferr != nil {
		if st.BufferedFragments > 0 {
			return st, fmt.Errorf("%w (%d fragments not acknowledged as persisted)", ferr, st.BufferedFragments)
		}
		return st, ferr
	}
	if err == nil && st.BufferedFragments > 0 {
		err = fmt.Errorf("%d fragments were not acknowledged", st.BufferedFragments)
	}
	if err == nil && st.Rejected > 0 {
		return st, fmt.Errorf("the service refused %d fragments (see the errors above)", st.Rejected)
	}
	if err != nil {
		return st, fmt.Errorf("%w (%d fragments not acknowledged as persisted)", err, st.BufferedFragments)
	}
	return st, nil
}

// countUnacknowledged counts as lost the frames of the fragments still
// held only in memory once the producer has stopped: nothing sends them
// any more. A disk buffer's fragments stay for the next start.
func (p *Producer) countUnacknowledged() {
	if p.countedUnacked {
		return // Close was called before
	}
	p.countedUnacked = true
	_, disk := p.buf.(*DiskBuffer)
	last := p.buf.Last()
	for f := p.buf.First(); f != nil; f = p.buf.Get(f.ID + 1) {
		if !disk || f.memOnly {
			p.stats.Lost.Unacknowledged += int64(f.Frames)
		}
		if f == last {
			break
		}
	}
}

func (p *Producer) setFatal(err error) {
	p.mu.Lock()
	if p.fatal == nil {
		p.fatal = err
	}
	p.mu.Unlock()
	p.event(Event{Type: EventFatal, Err: err, Message: err.Error()})
}
