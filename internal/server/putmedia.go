package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvsgo/kvsgo/internal/live"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// putMedia ingests one PutMedia connection: a Matroska stream read
// incrementally, each Cluster a fragment written through to the store as
// it arrives, acknowledged as it goes.
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
	released := false
	defer func() {
		if !released {
			release(ended)
		}
	}()
	s.metrics.putMedia.Inc()
	defer s.metrics.putMedia.Dec()

	in := newIngest(s, st, relative, startMS, r.Header.Get("x-amzn-fragment-acknowledgment-required") != "0",
		s.log.With("stream", st.Name, "remote", r.RemoteAddr))
	// The session owns its connection: it reads the body straight from
	// it, one read for whatever has arrived, and writes the acks itself.
	// net/http then never touches the body again, before or after the
	// handler returns (no concurrent reads of it, golang/go#68560), and the
	// connection ends with the session, as a producer's next session opens
	// a new one anyway.
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("PutMedia needs an HTTP/1.1 connection: %w", err)
	}
	in.conn = conn
	in.respHeader = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"+
		"Connection: close\r\nDate: %s\r\nx-amzn-RequestId: %s\r\n\r\n",
		s.cfg.Now().UTC().Format(http.TimeFormat), w.Header().Get("x-amzn-RequestId"))
	// The live view (WebRTC) gets every frame as it is parsed.
	in.live = s.live.Publish(st.Name, relative, startMS)
	defer in.live.Close()
	in.log.Info("producer connected", "timecodes", r.Header.Get("x-amzn-fragment-timecode-type"), "user_agent", r.UserAgent())
	// Server shutdown unblocks the body read.
	stop := context.AfterFunc(s.ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			conn.Close()
			return nil
		}
	}
	var raw io.Reader = brw.Reader // what net/http had read ahead comes first
	switch {
	case len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked":
		raw = newChunkedBody(raw)
	case r.ContentLength >= 0:
		raw = io.LimitReader(raw, r.ContentLength)
	}

	writerDone := make(chan struct{})
	go in.writeAcks(s.store.Gone(st.ID), writerDone)
	body := &bodyReader{r: raw, conn: conn, idle: s.cfg.IdleTimeout, in: in, stop: s.ctx}
	reason := in.runSafely(body)
	ended = reason == reasonEnd
	// The stream is free for the producer's next session before the
	// producer sees this one's end.
	release(ended)
	released = true
	in.acks.close()
	<-writerDone
	in.closeConn(ended)
	in.log.Info("producer disconnected", "reason", reason, "fragments", in.stored, "bytes", in.bytes.Load())
	return nil
}

// closeConn ends the connection after the response. If the producer is
// still sending (the session ended with an ERROR), the connection is shut
// for writing and what arrives is read and dropped for a moment before it
// closes: a close with unread data would reset the connection, and the
// producer could lose the acks it has not read yet.
func (in *ingest) closeConn(ended bool) {
	defer in.conn.Close()
	if ended {
		return
	}
	if cw, ok := in.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = in.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(in.conn, 4<<20))
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

// bodyReader reads the PutMedia body. The session ends after the idle
// timeout without data, and when the connection reaches its maximum age.
type bodyReader struct {
	r    io.Reader
	conn net.Conn // nil in tests without a connection
	idle time.Duration
	in   *ingest
	stop context.Context // the server's: shutting down ends the session

	deadlineSet time.Time
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
	left := b.in.s.cfg.MaxConnectionDuration - b.in.s.cfg.Now().Sub(b.in.opened)
	if left <= 0 {
		b.in.readErr = errConnectionAge
		return 0, b.in.readErr
	}
	// Moving a deadline costs a timer update: once a second is enough.
	if now := time.Now(); b.conn != nil && now.Sub(b.deadlineSet) >= time.Second {
		_ = b.conn.SetReadDeadline(now.Add(min(b.idle, left)))
		b.deadlineSet = now
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.in.received(n)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.in.readErr = err // a network failure, not bad Matroska
		switch {
		case b.in.deleted.Load():
			b.in.readErr = errStreamDeleted
		case errors.Is(err, os.ErrDeadlineExceeded) && b.in.s.cfg.Now().Sub(b.in.opened) >= b.in.s.cfg.MaxConnectionDuration:
			b.in.readErr = errConnectionAge
		case errors.Is(err, os.ErrDeadlineExceeded):
			b.in.readErr = fmt.Errorf("no data for %s", b.idle)
		}
	}
	return n, err
}

var (
	// errStreamDeleted ends the sessions of a deleted stream.
	errStreamDeleted = errors.New("the stream was deleted")
	// errConnectionAge ends a connection older than the service allows.
	errConnectionAge = errors.New("the connection reached its maximum age")
)

// errIDStreamDeleted is the ack ErrorId for a stream deleted under its
// producer (SERVICE_CALL_RESULT_STREAM_DELETED in AWS's producer SDK).
const errIDStreamDeleted = 4507

// maxFragmentTags is how many metadata tags a fragment may carry, as the
// service's quota says.
const maxFragmentTags = 10

// maxHeld bounds what a session keeps in memory at once: the header (EBML,
// Info, Tracks with their codec private data) and the tags before a
// fragment, or one Matroska element read whole (a laced block).
const maxHeld = 4 << 20

// maxFrame bounds a frame read whole for the live view: the service's
// fragment limit.
const maxFrame = 50 << 20

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

	conn       net.Conn
	respHeader string // written once the body has started
	acks       *ackQueue
	started    chan struct{}
	gotData    atomic.Bool
	deleted    atomic.Bool  // the stream was deleted under the session
	lastData   atomic.Int64 // unix nanos of the last body bytes
	bytes      atomic.Int64
	counter    prometheus.Counter
	readErr    error
	storeErr   error // the store failed: disk full, deleted stream

	win *window
	dem *mkv.Demuxer

	header       []byte
	scale        int64 // timecode scale, ns
	tracks       map[uint64]bool
	prefix       int64 // start of Tags before the next Cluster, -1 if none
	prefixTags   int   // metadata tags in them
	gap          int64 // between fragments: where the input not yet placed begins
	ebmlStart    int64
	clusterDepth int

	inFragment bool
	frag       fragmentState
	fw         *store.FragmentWriter
	lastTC     int64
	haveLastTC bool
	stored     int
}

type fragmentState struct {
	seq        uint64
	start      int64 // offset of the fragment's first byte (its Tags or Cluster)
	written    int64 // the bytes before this offset are in the store
	timecode   int64
	serverMS   int64
	producerMS int64
	maxBlockTC int64
	blocks     int
	// videoTCs are the fragment's video timecodes, in decoding order.
	videoTCs []int64
}

func newIngest(s *Server, st store.Stream, relative bool, startMS int64, acksOn bool, log *slog.Logger) *ingest {
	return &ingest{s: s, stream: st, relative: relative, startMS: startMS, acksOn: acksOn, opened: s.cfg.Now(), log: log,
		acks: newAckQueue(), started: make(chan struct{}), counter: s.metrics.bytes.WithLabelValues(st.Name)}
}

func (in *ingest) received(n int) {
	in.bytes.Add(int64(n))
	in.lastData.Store(time.Now().UnixNano())
	in.counter.Add(float64(n))
	if in.gotData.CompareAndSwap(false, true) {
		close(in.started)
	}
}

func (in *ingest) ack(a kvs.Ack) {
	if in.acksOn || a.EventType == kvs.AckError {
		in.acks.push(a)
	}
}

func (in *ingest) fail(id int, err error) string {
	info := kvs.LookupAckError(id)
	a := kvs.ErrorAck(id, in.frag.timecode, in.inFragment, "")
	if in.inFragment {
		a.FragmentNumber = store.FragmentNumber(in.frag.seq)
	}
	in.acks.push(a)
	in.s.metrics.ingestErrors.WithLabelValues(info.Code).Inc()
	in.log.Warn("PutMedia error sent to the producer", "error_id", id, "error_code", info.Code, "cause", err)
	return info.Code
}

// failStore ends the session on a store failure with the ErrorId the
// service uses for it.
func (in *ingest) failStore(err error) string {
	switch {
	case errors.Is(err, store.ErrStreamNotFound):
		return in.fail(errIDStreamDeleted, err)
	case errors.Is(err, store.ErrNoSpace):
		in.log.Error("the data directory's disk is full: fragments are refused (ERROR 5001, which producers resend) until space is freed", "err", err)
		return in.fail(kvs.ErrIDArchival, err)
	}
	return in.fail(kvs.ErrIDArchival, err)
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
// Whatever way it ends, a fragment not stored whole leaves nothing behind.
func (in *ingest) run(body io.Reader) string {
	in.prefix, in.ebmlStart = -1, -1
	in.win = newWindow(body, in.s.cfg.IngestBuffer, maxHeld, in.reclaim)
	in.dem = mkv.NewDemuxerSource(in.win)
	defer in.dropFragment()
	for {
		// Block payloads are skipped unread (written through as bytes)
		// unless the live view has a viewer for them.
		live := in.live.WantsFrames()
		in.dem.BlockHeaders = !live
		in.dem.Reader().MaxElementSize = maxHeld
		if live {
			in.dem.Reader().MaxElementSize = maxFrame
		}
		ev, err := in.dem.Next()
		if errors.Is(err, io.EOF) {
			return reasonEnd
		}
		if err != nil {
			return in.failed(err)
		}
		if code, failed := in.handle(ev); failed {
			return code
		}
	}
}

// failed says why the body could not be read on.
func (in *ingest) failed(err error) string {
	switch {
	case in.storeErr != nil:
		return in.failStore(in.storeErr)
	case errors.Is(in.readErr, errStreamDeleted):
		return in.fail(errIDStreamDeleted, in.readErr)
	case errors.Is(in.readErr, errConnectionAge):
		return in.fail(kvs.ErrIDConnectionDuration, fmt.Errorf("connection open for %s", in.s.cfg.MaxConnectionDuration))
	case in.readErr != nil:
		return fmt.Sprintf("connection lost: %v", in.readErr)
	case errors.Is(err, errWindowFull):
		return in.fail(kvs.ErrIDInvalidMKVData, err)
	}
	return in.fail(kvs.ErrIDInvalidMKVData, err)
}

// reclaim writes through what the window holds of the fragment being
// received, as far as the demuxer has placed it in the fragment, and
// returns the first input offset the session still needs.
func (in *ingest) reclaim() (int64, error) {
	if in.inFragment {
		if err := in.flushTo(min(in.horizon(), in.win.offset())); err != nil {
			return 0, err
		}
	}
	return in.keepFrom(), nil
}

// horizon is how far the input is known to belong to the current Cluster:
// to the end of the element being read inside it, or to the start of the
// element that ended it.
func (in *ingest) horizon() int64 {
	cur := in.dem.Reader().Current()
	switch {
	case cur.Depth <= in.clusterDepth:
		return cur.Offset
	case cur.Master():
		return cur.DataOffset()
	}
	return cur.DataOffset() + cur.Size
}

// keepFrom is the first input offset the session still needs: the
// fragment's bytes not yet written, tags waiting for their fragment, a
// header still arriving.
func (in *ingest) keepFrom() int64 {
	k := in.win.offset()
	if in.prefix >= 0 {
		k = min(k, in.prefix)
	}
	if in.inFragment {
		k = min(k, in.frag.written)
	} else {
		// What follows the last element placed may be the start of the
		// next Cluster, which becomes a fragment only at its Timecode.
		k = min(k, in.gap)
	}
	if in.header == nil && in.ebmlStart >= 0 {
		k = min(k, in.ebmlStart)
	}
	return k
}

// flushTo writes the fragment's bytes up to end to the store.
func (in *ingest) flushTo(end int64) error {
	f := &in.frag
	if end <= f.written || in.fw == nil {
		return nil
	}
	if !in.win.held(f.written) {
		return fmt.Errorf("internal error: fragment bytes from %d are no longer buffered", f.written)
	}
	if _, err := in.fw.Write(in.win.bytes(f.written, end)); err != nil {
		in.storeErr = err
		return err
	}
	f.written = end
	return nil
}

// dropFragment discards a fragment that was not stored whole.
func (in *ingest) dropFragment() {
	if in.fw != nil {
		in.fw.Abort()
		in.fw = nil
	}
}

func (in *ingest) handle(ev *mkv.Event) (code string, failed bool) {
	in.live.Event(ev)
	switch ev.Type {
	case mkv.EventEBML:
		in.ebmlStart = ev.Offset
		in.header = nil
	case mkv.EventHeader:
		if in.ebmlStart < 0 || !in.win.held(in.ebmlStart) || ev.End < in.ebmlStart {
			return in.fail(kvs.ErrIDInvalidMKVData, errors.New("a Tracks element without an EBML header before it")), true
		}
		hdr, err := mkv.WithUnknownSegmentSize(in.win.bytes(in.ebmlStart, ev.End))
		if err != nil {
			return in.fail(kvs.ErrIDInvalidMKVData, err), true
		}
		if n := len(ev.Header.Tracks); n == 0 || n > in.s.cfg.MaxTracks {
			return in.fail(kvs.ErrIDTooManyTracks, fmt.Errorf("%d tracks (at most %d)", n, in.s.cfg.MaxTracks)), true
		}
		in.header, in.ebmlStart, in.gap = hdr, -1, ev.End
		in.scale = int64(ev.Header.TimecodeScale)
		if in.scale == 0 {
			in.scale = mkv.DefaultTimecodeScale
		}
		in.tracks = map[uint64]bool{}
		for _, t := range ev.Header.Tracks {
			in.tracks[t.Number] = t.Type == mkv.TrackTypeVideo
		}
		in.win.shrink(in.keepFrom())
	case mkv.EventTags:
		if ev.Depth == 1 && !in.inFragment && !isEndOfFragment(ev.Tags) && in.header != nil {
			if in.prefix < 0 {
				in.prefix = ev.Offset
			}
			for _, t := range ev.Tags {
				if !strings.HasPrefix(t.Name, "AWS_KINESISVIDEO_") {
					in.prefixTags++
				}
			}
			if in.prefixTags > maxFragmentTags {
				return in.fail(kvs.ErrIDMetadataLimit, fmt.Errorf("%d metadata tags before one fragment (at most %d)", in.prefixTags, maxFragmentTags)), true
			}
		} else if !in.inFragment {
			in.gap = ev.End // tags that belong to no fragment (END_OF_FRAGMENT)
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
	now := in.s.cfg.Now()
	if age := now.Sub(in.opened); age > in.s.cfg.MaxConnectionDuration {
		return in.fail(kvs.ErrIDConnectionDuration, fmt.Errorf("connection open for %s", age.Round(time.Second))), true
	}
	start := ev.Offset
	if in.prefix >= 0 {
		start = in.prefix
	}
	tcMS := ev.Timecode * in.scale / 1e6
	in.frag = fragmentState{seq: in.s.store.ReserveFragment(), start: start, written: start, timecode: ev.Timecode,
		serverMS: now.UnixMilli(), producerMS: tcMS, maxBlockTC: ev.Timecode, videoTCs: in.frag.videoTCs[:0]}
	if in.relative {
		in.frag.producerMS = in.startMS + tcMS
	}
	in.inFragment = true
	in.clusterDepth = ev.Depth
	in.prefix, in.prefixTags = -1, 0
	if in.haveLastTC && ev.Timecode < in.lastTC {
		return in.fail(kvs.ErrIDTimecodeNotMonotonic, fmt.Errorf("fragment timecode %d after %d", ev.Timecode, in.lastTC)), true
	}
	if !in.win.held(start) {
		return in.fail(kvs.ErrIDInvalidMKVData, errors.New("a fragment whose start is no longer buffered")), true
	}
	fw, err := in.s.store.BeginFragment(in.stream.ID, in.header)
	if err != nil {
		return in.failStore(err), true
	}
	in.fw = fw
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
	if size := ev.End - f.start; size > in.s.cfg.MaxFragmentSize {
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
	if err := in.flushTo(end); err != nil {
		return in.failStore(err), true
	}
	f := in.frag
	in.inFragment = false
	in.gap = end
	in.lastTC, in.haveLastTC = f.timecode, true
	// The fragment lasts until its last frame ends: its latest
	// presentation time and one frame interval.
	durationMS := ((f.maxBlockTC - f.timecode) + frameInterval(f.videoTCs)) * in.scale / 1e6
	fw := in.fw
	in.fw = nil
	stored, dup, err := fw.Commit(store.FragmentMeta{Seq: f.seq, ProducerMS: f.producerMS, ServerMS: f.serverMS,
		DurationMS: durationMS, Timecode: f.timecode})
	if err != nil {
		return in.failStore(err), true
	}
	in.stored++
	// RECEIVED once it is stored: with retention 0 it is the last word a
	// producer gets about the fragment. PERSISTED only now that the
	// fragment is fsynced and indexed.
	in.ack(kvs.Ack{EventType: kvs.AckReceived, FragmentTimecode: f.timecode, HasTimecode: true, FragmentNumber: stored.Number()})
	if in.stream.RetentionHours > 0 {
		in.ack(kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: f.timecode, HasTimecode: true, FragmentNumber: stored.Number()})
	}
	if dup {
		in.log.Info("fragment already stored, byte for byte (sent again)", "fragment", stored.Number(), "producer_timestamp_ms", f.producerMS)
	} else {
		in.s.metrics.fragments.WithLabelValues(in.stream.Name).Inc()
		in.log.Info("fragment stored", "fragment", stored.Number(), "timecode", f.timecode, "bytes", stored.BodyLen, "duration_ms", durationMS)
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
