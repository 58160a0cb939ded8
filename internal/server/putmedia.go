package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvsgo/kvsgo/internal/live"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// putMedia ingests one PutMedia connection: a Matroska stream read
// incrementally, each Cluster a fragment, acknowledged as it goes.
func (s *Server) putMedia(req *request) error {
	r, w := req.r, req.w
	st, err := s.resolveActive(streamRef{StreamName: r.Header.Get("x-amzn-stream-name"), StreamARN: r.Header.Get("x-amzn-stream-arn")})
	if err != nil {
		return err
	}
	relative := false
	switch tt := r.Header.Get("x-amzn-fragment-timecode-type"); tt {
	case "ABSOLUTE":
	case "RELATIVE":
		relative = true
	default:
		return invalidArgument("x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE, not %q.", tt)
	}
	startMS, err := parseProducerStart(r.Header.Get("x-amzn-producer-start-timestamp"))
	if err != nil {
		return invalidArgument("%v", err)
	}
	release, ok := s.store.AcquireIngest(st.ID)
	if !ok {
		return errorf(400, "ConnectionLimitExceededException", "Stream %s already has a PutMedia connection; only one is allowed.", st.Name)
	}
	ended := false // the producer finished its body: GetMedia readers may end
	defer func() { release(ended) }()
	s.metrics.putMedia.Inc()
	defer s.metrics.putMedia.Dec()

	in := &ingest{
		s: s, stream: st, relative: relative, startMS: startMS,
		acksOn:  r.Header.Get("x-amzn-fragment-acknowledgment-required") != "0",
		opened:  s.cfg.Now(),
		log:     s.log.With("stream", st.Name, "remote", r.RemoteAddr),
		acks:    make(chan kvs.Ack, 64),
		started: make(chan struct{}),
	}
	// The live view (WebRTC) gets every frame as it is parsed.
	in.live = s.live.Publish(st.Name, relative, startMS)
	defer in.live.Close()
	in.log.Info("producer connected", "timecodes", r.Header.Get("x-amzn-fragment-timecode-type"), "user_agent", r.UserAgent())
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		return fmt.Errorf("enabling full-duplex HTTP: %w", err)
	}
	// Server shutdown unblocks the body read.
	stop := context.AfterFunc(s.ctx, func() { _ = rc.SetReadDeadline(time.Now()) })
	defer stop()
	// So does the stream's deletion, which ends the session with 4507.
	handlerDone := make(chan struct{})
	defer close(handlerDone)
	go func() {
		select {
		case <-s.store.Gone(st.ID):
			in.deleted.Store(true)
			_ = rc.SetReadDeadline(time.Now())
		case <-handlerDone:
		}
	}()

	writerDone := make(chan struct{})
	go in.writeAcks(w, rc, writerDone)
	body := &bodyReader{r: r.Body, rc: rc, idle: s.cfg.IdleTimeout, in: in, stop: s.ctx}
	reason := in.runSafely(body)
	ended = reason == reasonEnd
	close(in.acks)
	<-writerDone
	in.log.Info("producer disconnected", "reason", reason, "fragments", in.stored, "bytes", in.bytes.Load())
	return nil
}

// parseProducerStart reads x-amzn-producer-start-timestamp, "<sec>.<ms>".
// The C producer prints the milliseconds without zero padding (5 ms is
// ".5") and the Java SDK with three digits, so the part after the dot is a
// whole number of milliseconds.
func parseProducerStart(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	secs, ms, _ := strings.Cut(v, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec < 0 {
		return 0, fmt.Errorf("x-amzn-producer-start-timestamp %q is not <seconds>.<milliseconds>", v)
	}
	var m int64
	if ms != "" {
		if m, err = strconv.ParseInt(ms, 10, 64); err != nil || m < 0 || m > 999 {
			return 0, fmt.Errorf("x-amzn-producer-start-timestamp %q is not <seconds>.<milliseconds>", v)
		}
	}
	return sec*1000 + m, nil
}

// bodyReader reads the PutMedia body, ending the session after the idle
// timeout and keeping the bytes of the fragment being received.
type bodyReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	in   *ingest
	stop context.Context // the server's: shutting down ends the session
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.stop != nil && b.stop.Err() != nil {
		b.in.readErr = errors.New("the server is shutting down")
		return 0, b.in.readErr
	}
	if b.in.deleted.Load() {
		b.in.readErr = errStreamDeleted
		return 0, b.in.readErr
	}
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.in.received(p[:n])
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.in.readErr = err // a network failure, not bad Matroska
		if b.in.deleted.Load() {
			b.in.readErr = errStreamDeleted
		}
	}
	return n, err
}

// errStreamDeleted ends the sessions of a deleted stream.
var errStreamDeleted = errors.New("the stream was deleted")

// errIDStreamDeleted is the ack ErrorId for a stream deleted under its
// producer (SERVICE_CALL_RESULT_STREAM_DELETED in AWS's producer SDK).
const errIDStreamDeleted = 4507

// reasonEnd is why a session ends when the producer finished its body.
const reasonEnd = "end of stream"

// ingest is the state of one PutMedia connection.
type ingest struct {
	s        *Server
	stream   store.Stream
	relative bool
	startMS  int64
	acksOn   bool
	opened   time.Time
	log      *slog.Logger
	live     *live.Publisher

	acks     chan kvs.Ack
	started  chan struct{}
	gotData  atomic.Bool
	deleted  atomic.Bool  // the stream was deleted under the session
	lastData atomic.Int64 // unix nanos of the last body bytes
	bytes    atomic.Int64
	readErr  error

	// buf holds input bytes from offset base on: the fragment being
	// received and anything after it the demuxer has read ahead.
	buf  []byte
	base int64

	header    []byte
	scale     int64 // timecode scale, ns
	tracks    map[uint64]bool
	prefix    int64 // start of Tags before the next Cluster, -1 if none
	ebmlStart int64

	inFragment bool
	frag       fragmentState
	lastTC     int64
	haveLastTC bool
	stored     int
}

type fragmentState struct {
	seq        uint64
	start      int64 // offset of the fragment's first byte (its Tags or Cluster)
	timecode   int64
	serverMS   int64
	producerMS int64
	maxBlockTC int64
	blocks     int
	// videoTCs are the fragment's video timecodes, in decoding order.
	videoTCs []int64
}

func (in *ingest) received(p []byte) {
	in.buf = append(in.buf, p...)
	in.bytes.Add(int64(len(p)))
	in.lastData.Store(time.Now().UnixNano())
	in.s.metrics.bytes.WithLabelValues(in.stream.Name).Add(float64(len(p)))
	if in.gotData.CompareAndSwap(false, true) {
		close(in.started)
	}
}

// writeAcks owns the response: the 200 header once the body has started
// (so that Go has answered Expect: 100-continue first), then each ack as
// its own flushed chunk, and IDLE while no data arrives.
func (in *ingest) writeAcks(w http.ResponseWriter, rc *http.ResponseController, done chan<- struct{}) {
	defer close(done)
	var line []byte
	wroteHeader := false
	writeHeader := func() {
		if !wroteHeader {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_ = rc.Flush()
			wroteHeader = true
		}
	}
	idle := time.NewTicker(in.s.cfg.IdleInterval)
	defer idle.Stop()
	for {
		select {
		case <-in.started:
			writeHeader()
			in.started = nil // a nil channel never fires again
		case a, ok := <-in.acks:
			if !ok {
				writeHeader()
				return
			}
			writeHeader()
			line = a.AppendJSON(line[:0])
			// A client that stops reading acks must not stall ingest.
			_ = rc.SetWriteDeadline(time.Now().Add(in.s.cfg.IdleTimeout))
			if _, err := w.Write(line); err != nil {
				in.drain()
				return
			}
			_ = rc.Flush()
			in.s.metrics.acks.WithLabelValues(string(a.EventType)).Inc()
		case <-idle.C:
			if !wroteHeader || time.Since(time.Unix(0, in.lastData.Load())) < in.s.cfg.IdleInterval {
				continue
			}
			idleAck := kvs.Ack{EventType: kvs.AckIdle}
			line = idleAck.AppendJSON(line[:0])
			_ = rc.SetWriteDeadline(time.Now().Add(in.s.cfg.IdleTimeout))
			if _, err := w.Write(line); err != nil {
				in.drain()
				return
			}
			_ = rc.Flush()
			in.s.metrics.acks.WithLabelValues(string(kvs.AckIdle)).Inc()
		}
	}
}

// drain discards acks once the client has gone, so the reader never blocks.
func (in *ingest) drain() {
	for range in.acks { //nolint:revive // discarding on purpose
	}
}

func (in *ingest) ack(a kvs.Ack) {
	if in.acksOn || a.EventType == kvs.AckError {
		in.acks <- a
	}
}

func (in *ingest) fail(id int, err error) string {
	info := kvs.LookupAckError(id)
	a := kvs.ErrorAck(id, in.frag.timecode, in.inFragment, "")
	if in.inFragment {
		a.FragmentNumber = store.FragmentNumber(in.frag.seq)
	}
	in.acks <- a
	in.s.metrics.ingestErrors.WithLabelValues(info.Code).Inc()
	in.log.Warn("PutMedia error sent to the producer", "error_id", id, "error_code", info.Code, "cause", err)
	return info.Code
}

// runSafely runs the session; a bug must not take the server down nor leave
// the ack writer using a finished response.
func (in *ingest) runSafely(body io.Reader) (reason string) {
	defer func() {
		if r := recover(); r != nil {
			in.log.Error("PutMedia session crashed", "panic", r, "stack", string(debug.Stack()))
			reason = in.fail(kvs.ErrIDInternal, fmt.Errorf("internal error: %v", r))
		}
	}()
	return in.run(body)
}

// run reads the body until it ends or fails, and returns why it ended.
func (in *ingest) run(body io.Reader) string {
	in.prefix, in.ebmlStart = -1, -1
	dem := mkv.NewDemuxer(body)
	dem.Reader().MaxElementSize = in.s.cfg.MaxFragmentSize
	for {
		ev, err := dem.Next()
		if errors.Is(err, io.EOF) {
			return reasonEnd
		}
		if err != nil {
			if errors.Is(in.readErr, errStreamDeleted) {
				return in.fail(errIDStreamDeleted, in.readErr)
			}
			if in.readErr != nil {
				return fmt.Sprintf("connection lost: %v", in.readErr)
			}
			return in.fail(kvs.ErrIDInvalidMKVData, err)
		}
		if code, failed := in.handle(ev); failed {
			return code
		}
		if int64(len(in.buf)) > in.s.cfg.MaxFragmentSize+(1<<20) {
			return in.fail(kvs.ErrIDFragmentSizeReached, fmt.Errorf("%d bytes without a complete fragment", len(in.buf)))
		}
	}
}

func (in *ingest) slice(from, to int64) []byte { return in.buf[from-in.base : to-in.base] }

// trim drops buffered bytes before off.
func (in *ingest) trim(off int64) {
	if in.prefix >= 0 {
		off = min(off, in.prefix)
	}
	if in.inFragment {
		off = min(off, in.frag.start)
	}
	if in.header == nil && in.ebmlStart >= 0 {
		off = min(off, in.ebmlStart) // the header is still arriving
	}
	if off <= in.base {
		return
	}
	n := copy(in.buf, in.buf[off-in.base:])
	in.buf = in.buf[:n]
	in.base = off
}

func (in *ingest) handle(ev *mkv.Event) (code string, failed bool) {
	in.live.Event(ev)
	switch ev.Type {
	case mkv.EventEBML:
		in.ebmlStart = ev.Offset
		in.header = nil
	case mkv.EventHeader:
		if in.ebmlStart < in.base || ev.End < in.ebmlStart {
			return in.fail(kvs.ErrIDInvalidMKVData, errors.New("a Tracks element without an EBML header before it")), true
		}
		hdr, err := mkv.WithUnknownSegmentSize(in.slice(in.ebmlStart, ev.End))
		if err != nil {
			return in.fail(kvs.ErrIDInvalidMKVData, err), true
		}
		if n := len(ev.Header.Tracks); n == 0 || n > in.s.cfg.MaxTracks {
			return in.fail(kvs.ErrIDTooManyTracks, fmt.Errorf("%d tracks (at most %d)", n, in.s.cfg.MaxTracks)), true
		}
		in.header, in.ebmlStart = hdr, -1
		in.scale = int64(ev.Header.TimecodeScale)
		if in.scale == 0 {
			in.scale = mkv.DefaultTimecodeScale
		}
		in.tracks = map[uint64]bool{}
		for _, t := range ev.Header.Tracks {
			in.tracks[t.Number] = t.Type == mkv.TrackTypeVideo
		}
		in.trim(ev.End)
	case mkv.EventTags:
		if ev.Depth == 1 && !in.inFragment && !isEndOfFragment(ev.Tags) && in.header != nil {
			if in.prefix < 0 {
				in.prefix = ev.Offset
			}
		} else {
			in.trim(ev.End)
		}
	case mkv.EventCluster:
		return in.startFragment(ev)
	case mkv.EventBlock:
		return in.block(ev)
	case mkv.EventClusterEnd:
		return in.endFragment(ev.Offset)
	}
	return "", false
}

func isEndOfFragment(tags []mkv.SimpleTag) bool {
	for _, t := range tags {
		if t.Name == mkv.TagEndOfFragment {
			return true
		}
	}
	return false
}

func (in *ingest) startFragment(ev *mkv.Event) (string, bool) {
	if in.header == nil {
		return in.fail(kvs.ErrIDInvalidMKVData, errors.New("a Cluster before the stream's Tracks")), true
	}
	if age := in.s.cfg.Now().Sub(in.opened); age > in.s.cfg.MaxConnectionDuration {
		return in.fail(kvs.ErrIDConnectionDuration, fmt.Errorf("connection open for %s", age.Round(time.Second))), true
	}
	now := in.s.cfg.Now()
	start := ev.Offset
	if in.prefix >= 0 {
		start = in.prefix
	}
	tcMS := ev.Timecode * in.scale / 1e6
	in.frag = fragmentState{seq: in.s.store.ReserveFragment(), start: start, timecode: ev.Timecode, serverMS: now.UnixMilli(),
		producerMS: tcMS, maxBlockTC: ev.Timecode, videoTCs: in.frag.videoTCs[:0]}
	if in.relative {
		in.frag.producerMS = in.startMS + tcMS
	}
	in.inFragment = true
	in.prefix = -1
	if in.haveLastTC && ev.Timecode < in.lastTC {
		return in.fail(kvs.ErrIDTimecodeNotMonotonic, fmt.Errorf("fragment timecode %d after %d", ev.Timecode, in.lastTC)), true
	}
	in.ack(kvs.Ack{EventType: kvs.AckBuffering, FragmentTimecode: ev.Timecode, HasTimecode: true, FragmentNumber: store.FragmentNumber(in.frag.seq)})
	return "", false
}

func (in *ingest) block(ev *mkv.Event) (string, bool) {
	isVideo, ok := in.tracks[ev.Block.Track]
	if !ok {
		return in.fail(kvs.ErrIDTrackNumberMismatch, fmt.Errorf("a frame for track %d, which the header does not have", ev.Block.Track)), true
	}
	f := &in.frag
	if d := time.Duration((ev.Timecode - f.timecode) * in.scale); d > in.s.cfg.MaxFragmentDuration {
		return in.fail(kvs.ErrIDFragmentDurationReached, fmt.Errorf("a frame %s into the fragment (at most %s)", d, in.s.cfg.MaxFragmentDuration)), true
	}
	if size := ev.Offset - f.start; size > in.s.cfg.MaxFragmentSize {
		return in.fail(kvs.ErrIDFragmentSizeReached, fmt.Errorf("fragment of %d bytes (at most %d)", size, in.s.cfg.MaxFragmentSize)), true
	}
	if isVideo {
		f.blocks++
		f.maxBlockTC = max(f.maxBlockTC, ev.Timecode)
		f.videoTCs = append(f.videoTCs, ev.Timecode)
	}
	return "", false
}

func (in *ingest) endFragment(end int64) (string, bool) {
	if !in.inFragment {
		return "", false
	}
	f := in.frag
	in.inFragment = false
	in.lastTC, in.haveLastTC = f.timecode, true
	// The fragment lasts until its last frame ends: its latest
	// presentation time and one frame interval.
	durationMS := ((f.maxBlockTC - f.timecode) + frameInterval(f.videoTCs)) * in.scale / 1e6
	stored, dup, err := in.s.store.AppendFragment(in.stream.ID, store.NewFragment{
		Seq: f.seq, Header: in.header, Body: in.slice(f.start, end),
		ProducerMS: f.producerMS, ServerMS: f.serverMS, DurationMS: durationMS, Timecode: f.timecode,
	})
	in.trim(end)
	if err != nil {
		if errors.Is(err, store.ErrStreamNotFound) {
			return in.fail(errIDStreamDeleted, err), true
		}
		return in.fail(kvs.ErrIDArchival, err), true
	}
	in.stored++
	// RECEIVED once it is stored: with retention 0 it is the last word a
	// producer gets about the fragment.
	in.ack(kvs.Ack{EventType: kvs.AckReceived, FragmentTimecode: f.timecode, HasTimecode: true, FragmentNumber: stored.Number()})
	if dup {
		in.log.Info("fragment already stored, byte for byte (sent again)", "fragment", stored.Number(), "producer_timestamp_ms", f.producerMS)
	} else {
		in.s.metrics.fragments.WithLabelValues(in.stream.Name).Inc()
		in.log.Info("fragment stored", "fragment", stored.Number(), "timecode", f.timecode, "bytes", stored.BodyLen, "duration_ms", durationMS)
	}
	if in.stream.RetentionHours > 0 {
		in.ack(kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: f.timecode, HasTimecode: true, FragmentNumber: stored.Number()})
	}
	return "", false
}

// frameInterval is the median step between a fragment's distinct video
// presentation times, sorted: the frame interval, whatever the decoding
// order (with B-frames the second frame decoded is shown several frames
// later) and robust to a dropped frame; 0 for a single frame. It sorts tcs.
func frameInterval(tcs []int64) int64 {
	slices.Sort(tcs)
	var steps []int64
	for i := 1; i < len(tcs); i++ {
		if d := tcs[i] - tcs[i-1]; d > 0 {
			steps = append(steps, d)
		}
	}
	if len(steps) == 0 {
		return 0
	}
	slices.Sort(steps)
	return steps[len(steps)/2]
}
