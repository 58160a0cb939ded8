package kvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// ProducerConfig configures a Producer. Zero values take the defaults in
// brackets.
type ProducerConfig struct {
	Stream       StreamSetup
	ControlPlane ControlPlane
	Credentials  aws.CredentialsProvider
	Region       string
	HTTPClient   *http.Client
	Logger       *slog.Logger
	Now          func() time.Time
	// OnEvent is called for everything worth telling the user; it must not
	// block.
	OnEvent func(Event)

	BufferDuration   time.Duration // oldest to newest fragment held [120 s]
	BufferBytes      int64         // bytes held [128 MiB]
	AckTimeout       time.Duration // a fragment's first bytes sent without BUFFERING [10 s]
	MaxConnectionAge time.Duration // rotate before the service's 45 min [40 min]
	GiveUpAfter      time.Duration // fail after this long without a working connection [never]
	CloseTimeout     time.Duration // at Close, give up after this long connected without progress [30 s]
	RetryMin         time.Duration // first reconnect delay [500 ms]
	RetryMax         time.Duration // longest reconnect delay [10 s]
}

func (c *ProducerConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OnEvent == nil {
		c.OnEvent = func(Event) {}
	}
	if c.BufferDuration == 0 {
		c.BufferDuration = 120 * time.Second
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = 128 << 20
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.MaxConnectionAge == 0 {
		c.MaxConnectionAge = 40 * time.Minute
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
}

// EventType says what an Event reports.
type EventType int

// Producer events.
const (
	EventConnected EventType = iota + 1
	EventDisconnected
	EventAck
	EventAckError
	EventDropped
	EventWarning
	EventFatal
)

// Event is something the producer tells its user.
type Event struct {
	Type    EventType
	Time    time.Time
	Message string
	Ack     Ack
	Err     error
}

// Stats counts what the producer did.
type Stats struct {
	Frames, DroppedFrames       int64
	Fragments, DroppedFragments int64
	Persisted, Received, Errors int64
	// Rejected counts fragments the service refused for good
	// (non-retriable ERROR acks).
	Rejected   int64
	BytesSent  int64
	Reconnects int64
	Connected  bool
	// LastAckLatency is from a fragment's last frame to its PERSISTED.
	LastAckLatency                time.Duration
	BufferedFragments             int
	BufferedBytes                 int64
	BufferedDuration, MediaSpan   time.Duration
	FirstFrameTime, LastFrameTime time.Time
}

// Producer streams frames to one Kinesis video stream over PutMedia. Put
// frames from one goroutine; Close at the end.
type Producer struct {
	cfg ProducerConfig
	log *slog.Logger

	mu        sync.Mutex
	buf       Buffer
	writer    *mkv.Writer
	header    []byte
	fragTrack uint8
	base      time.Duration // wall clock at PTS 0
	started   bool
	closing   bool
	fatal     error
	retention int32
	stats     Stats
	warned    map[string]bool
	keys      int
	// frames of other tracks that came before the first key frame
	early []media.Frame
	// what the connection is doing, guarded by mu
	sendID       uint64
	sendOff      int
	awaitingFrom time.Time // a fragment's first bytes sent, no ack since
	writeSince   time.Time // a Write to the connection under way since
	writing      bool      // the fragment at sendID is being written
	abortSend    bool
	staleErr     error
	lastProgress time.Time // last RECEIVED or PERSISTED, or Close
	skipToKey    bool      // the open fragment was refused: drop frames until a key frame
	errStreak    int       // ERROR acks in a row
	pending      []Event   // events queued under mu, sent after it is released

	notify chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// headerSink receives the Writer's bytes: the header once, then
// everything into the newest fragment.
type headerSink struct{ p *Producer }

func (s headerSink) Write(b []byte) (int, error) {
	if s.p.header == nil {
		s.p.header = append([]byte(nil), b...)
		return len(b), nil
	}
	s.p.buf.Append(b)
	return len(b), nil
}

// NewProducer prepares the stream and starts the connection in the
// background. The tracks are the source's; the first video track's key
// frames start fragments.
func NewProducer(ctx context.Context, cfg ProducerConfig, tracks []media.Track) (*Producer, error) {
	cfg.defaults()
	if cfg.ControlPlane == nil || cfg.Credentials == nil {
		return nil, errors.New("kvs: ProducerConfig needs a ControlPlane and Credentials")
	}
	h := mkv.Header{}
	fragTrack := uint8(0)
	for _, t := range tracks {
		mt := mkv.Track{Number: uint64(t.Number), Name: t.Name, CodecID: t.CodecID, CodecPrivate: t.CodecPrivate}
		switch t.Kind {
		case media.KindVideo:
			mt.Type, mt.Width, mt.Height = mkv.TrackTypeVideo, uint16(t.Width), uint16(t.Height)
			if fragTrack == 0 {
				fragTrack = t.Number
			}
		case media.KindAudio:
			mt.Type, mt.SamplingFrequency, mt.Channels = mkv.TrackTypeAudio, t.SampleRate, uint8(t.Channels)
		}
		h.Tracks = append(h.Tracks, mt)
	}
	if len(tracks) == 0 {
		return nil, errors.New("kvs: no tracks")
	}
	if fragTrack == 0 {
		fragTrack = tracks[0].Number
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Producer{cfg: cfg, log: cfg.Logger, buf: &MemoryBuffer{}, fragTrack: fragTrack,
		warned: map[string]bool{}, notify: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	w, err := mkv.NewWriter(headerSink{p}, h)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kvs: %w", err)
	}
	if err := w.WriteHeader(); err != nil {
		cancel()
		return nil, fmt.Errorf("kvs: %w", err)
	}
	p.writer = w
	go p.run()
	return p, nil
}

func (p *Producer) event(e Event) {
	e.Time = p.cfg.Now()
	p.cfg.OnEvent(e)
}

func (p *Producer) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// queue records an event while mu is held; flush sends queued events
// once it is released, so that OnEvent may call back into the producer.
func (p *Producer) queue(e Event) { p.pending = append(p.pending, e) }

func (p *Producer) flush() {
	p.mu.Lock()
	events := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, e := range events {
		p.event(e)
	}
}

// warnOnce queues a warning the first time; mu must be held.
func (p *Producer) warnOnce(key, msg string) {
	if p.warned[key] {
		return
	}
	p.warned[key] = true
	p.queue(Event{Type: EventWarning, Message: msg})
}

// maxAudioLead is how far before its fragment's start a frame of another
// track may be and still be put at that start.
const maxAudioLead = 200 * time.Millisecond

// Put adds a frame. It returns at once: the frame goes out on the
// connection as soon as the connection takes it, and stays buffered until
// the service has persisted its fragment. It fails only when the producer
// has given up (see Err).
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
	now := p.cfg.Now()
	if !p.started {
		p.base = time.Duration(now.UnixNano()) - f.PTS
		p.started = true
		p.stats.FirstFrameTime = now
	}
	p.stats.LastFrameTime = now
	abs := p.base + f.PTS
	if p.skipToKey {
		if !f.Key || f.Track != p.fragTrack {
			p.stats.DroppedFrames++
			return nil
		}
		p.skipToKey = false
	}
	if f.PTS != f.DTS && f.Track == p.fragTrack {
		p.warnOnce("bframes", "the source has B-frames: they add latency and some players stutter on them; cameras and encoders can turn them off (x264 bframes=0, ffmpeg -bf 0)")
	}
	if f.Key && f.Track == p.fragTrack {
		tc := int64(abs / time.Millisecond)
		if last := p.buf.Last(); last != nil {
			if tc <= last.Timecode {
				p.stats.DroppedFrames++
				p.warnOnce("order", fmt.Sprintf("key frame at %d ms is not after the previous one (%d ms): timestamps must increase; dropped", tc, last.Timecode))
				return nil
			}
			p.checkKeyInterval(time.Duration(tc-last.Timecode) * time.Millisecond)
		}
		if last := p.buf.Last(); last != nil {
			last.CompletedAt = now
		}
		p.buf.Start(tc)
		p.stats.Fragments++
		defer p.flushEarly()
	} else if last := p.buf.Last(); last != nil && f.Track == p.fragTrack &&
		time.Duration(int64(abs/time.Millisecond)-last.Timecode)*time.Millisecond > 20*time.Second {
		p.warnOnce("longfragment", "no key frame for 20 s: Kinesis Video Streams refuses fragments longer than 20 s (error 4002); set the encoder's key-frame interval to about the frame rate (x264enc key-int-max, ffmpeg -g, rpicam-vid --intra)")
	}
	if last := p.buf.Last(); last != nil && f.Track != p.fragTrack {
		// Audio interleaved a little behind the video key frame that
		// started the fragment belongs at its start, not in the bin.
		start := time.Duration(last.Timecode) * time.Millisecond
		if abs < start && start-abs <= maxAudioLead {
			abs = start
		}
	}
	if p.buf.Last() == nil && f.Track != p.fragTrack {
		// Audio often starts a moment before the first video key frame:
		// keep a little of it for the first fragment.
		if len(p.early) < 64 {
			f.Data = append([]byte(nil), f.Data...)
			f.PTS = abs
			p.early = append(p.early, f)
			return nil
		}
	}
	err := p.writer.WriteFrame(uint64(f.Track), abs, f.Key, f.Data)
	switch {
	case errors.Is(err, mkv.ErrNeedKeyFrame):
		p.stats.DroppedFrames++ // before the first key frame: nothing to attach it to
		return nil
	case errors.Is(err, mkv.ErrBlockTimecode), errors.Is(err, mkv.ErrTimecodeOrder):
		p.stats.DroppedFrames++
		p.warnOnce("blocktc", fmt.Sprintf("a frame's timestamp does not fit in its fragment (%v); dropped. Check the source's timestamps", err))
		return nil
	case err != nil:
		return fmt.Errorf("kvs: %w", err)
	}
	p.stats.Frames++
	p.trimOverflow()
	p.wake()
	return nil
}

// flushEarly writes the frames of other tracks that arrived just before
// the first fragment started, at its start; older ones are dropped.
func (p *Producer) flushEarly() {
	start := time.Duration(p.buf.Last().Timecode) * time.Millisecond
	for _, f := range p.early {
		if start-f.PTS > maxAudioLead {
			p.stats.DroppedFrames++
			continue
		}
		if err := p.writer.WriteFrame(uint64(f.Track), max(f.PTS, start), f.Key, f.Data); err != nil {
			p.stats.DroppedFrames++
			continue
		}
		p.stats.Frames++
	}
	p.early = nil
}

func (p *Producer) checkKeyInterval(d time.Duration) {
	p.keys++
	if p.keys != 1 {
		return
	}
	switch {
	case d > 20*time.Second:
		p.warnOnce("keyint", fmt.Sprintf("key frames come every %s: Kinesis Video Streams refuses fragments over 20 s (error 4002); set the encoder's key-frame interval to about the frame rate", d.Round(time.Millisecond)))
	case d < time.Second:
		p.warnOnce("keyint", fmt.Sprintf("key frames come every %s: each starts a fragment, and Kinesis Video Streams expects fragments of 1 to 20 s (and at most 5 a second); a key-frame interval of 1 to 2 s is best", d.Round(time.Millisecond)))
	}
}

// trimOverflow drops the oldest whole fragments while the buffer holds
// more than its limits.
func (p *Producer) trimOverflow() {
	for {
		n, bytes := p.buf.Size()
		first, last := p.buf.First(), p.buf.Last()
		if n < 2 {
			return
		}
		span := time.Duration(last.Timecode-first.Timecode) * time.Millisecond
		if bytes <= p.cfg.BufferBytes && span <= p.cfg.BufferDuration {
			return
		}
		f := p.buf.DropOldest()
		p.stats.DroppedFragments++
		if f.ID == p.sendID && (p.sendOff > 0 || p.writing) {
			p.abortSend = true // half sent: the connection must start over
		}
		p.queue(Event{Type: EventDropped, Message: fmt.Sprintf(
			"buffer full (%d fragments, %d MB, %s of video not yet persisted): dropped the oldest fragment (%d ms); the service is not keeping up or cannot be reached",
			n, bytes>>20, span.Round(time.Second), f.Timecode)})
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
		if l := p.buf.Last(); l != nil && !l.Complete {
			if err := p.writer.EndFragment(); err != nil {
				p.log.Warn("ending the last fragment", "err", err)
			}
			l.Complete = true
		}
	}
	p.mu.Unlock()
	p.wake()
	// Wait while there is progress. While the service cannot be reached,
	// the reconnect loop's own GiveUpAfter decides.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case <-p.done:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-tick.C:
			p.mu.Lock()
			stalled := p.cfg.Now().Sub(p.lastProgress) > p.cfg.CloseTimeout
			p.mu.Unlock()
			if stalled {
				err = fmt.Errorf("gave up waiting %s for the service to acknowledge the last fragments", p.cfg.CloseTimeout)
				break wait
			}
		}
	}
	p.cancel()
	<-p.done
	st := p.Stats()
	if ferr := p.Err(); ferr != nil {
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

func (p *Producer) setFatal(err error) {
	p.mu.Lock()
	if p.fatal == nil {
		p.fatal = err
	}
	p.mu.Unlock()
	p.event(Event{Type: EventFatal, Err: err, Message: err.Error()})
}

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
	p.mu.Unlock()
	if _, err := sess.Write(p.header); err != nil {
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
		switch {
		case f != nil && p.sendOff == 0 && f.Complete && next != nil && (f.Acked == AckPersisted || f.Acked == AckError):
			p.sendID++ // the service has it, or refused it for good: do not send it again
			p.mu.Unlock()
			continue
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
			p.sendOff += n
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
	case f != nil && !info.Retriable:
		f.Acked = AckError // it cannot succeed: never send it again
		p.stats.Rejected++
		if f == p.buf.Last() && !f.Complete {
			f.Complete = true
			p.skipToKey = true // the rest of it would be refused too
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
