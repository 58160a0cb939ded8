package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
)

// GetMedia in-band error IDs (the API reference's list).
const (
	getMediaErrNotFound = 4000 // requested fragment is not found
	getMediaErrInternal = 5000
)

// getMedia streams a stream's fragments from a start selector on and
// follows the live edge, as the service does: at the edge it waits for data
// for as long as the reader stays, whether or not a producer is connected
// (one may be reconnecting, or not have started yet). Only a reader that has
// caught up with the end of a producer's stream (its PutMedia body
// finished) is ended, GetMediaLinger after that end, unless more data comes.
func (s *Server) getMedia(req *request) error {
	var in struct {
		streamRef
		StartSelector *struct {
			StartSelectorType   string     `json:"StartSelectorType"`
			AfterFragmentNumber string     `json:"AfterFragmentNumber"`
			StartTimestamp      *epochTime `json:"StartTimestamp"`
			ContinuationToken   string     `json:"ContinuationToken"`
		} `json:"StartSelector"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return err
	}
	if in.StartSelector == nil {
		return invalidArgument("StartSelector is required.")
	}
	sel := in.StartSelector
	var number string // a fragment number the selector names
	switch sel.StartSelectorType {
	case "EARLIEST", "NOW":
	case "FRAGMENT_NUMBER":
		number = sel.AfterFragmentNumber
		if !fragNumRE().MatchString(number) {
			return invalidArgument("AfterFragmentNumber %q must be a fragment number (1 to 128 digits).", number)
		}
	case "CONTINUATION_TOKEN":
		number = sel.ContinuationToken
		if !fragNumRE().MatchString(number) {
			return invalidArgument("ContinuationToken %q is not one GetMedia gave out (AWS_KINESISVIDEO_CONTINUATION_TOKEN).", number)
		}
	case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
		if sel.StartTimestamp == nil {
			return invalidArgument("StartTimestamp is required with %s.", sel.StartSelectorType)
		}
	default:
		return invalidArgument("StartSelectorType %q is not one of FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, NOW, EARLIEST, CONTINUATION_TOKEN.", sel.StartSelectorType)
	}
	st, err := s.resolveActive(in.streamRef)
	if err != nil {
		return err
	}
	if ae := s.allow("GetMedia", st.ID, getMediaTPS); ae != nil {
		return ae
	}
	g := &getMediaSession{s: s, st: st, log: s.log.With("stream", st.Name, "remote", req.r.RemoteAddr)}
	switch sel.StartSelectorType {
	case "NOW":
		if g.after, err = s.store.Latest(st.ID); err != nil {
			return err
		}
	case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
		g.fromMS, g.byProducer = sel.StartTimestamp.UnixMilli(), sel.StartSelectorType == "PRODUCER_TIMESTAMP"
		g.filter = true
	}
	s.metrics.getMedia.Inc()
	defer s.metrics.getMedia.Dec()
	g.log.Info("GetMedia started", "selector", sel.StartSelectorType)

	w := req.w
	g.w, g.rc = w, http.NewResponseController(w)
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	_ = g.rc.Flush()
	if number != "" {
		// Both start after the fragment named: a continuation token is the
		// number of the last fragment read, and FRAGMENT_NUMBER starts
		// "with the chunk after" AfterFragmentNumber. One the stream does
		// not have is an in-band error, as the reference says.
		seq, err := s.liveFragment(st, number)
		if err != nil {
			g.fail(getMediaErrNotFound, "FRAGMENT_NOT_FOUND", number, err)
			return nil
		}
		g.after = seq
	}
	ctx, cancel := context.WithCancel(req.r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	g.run(ctx)
	return nil
}

// getMediaSession is one GetMedia response being streamed.
type getMediaSession struct {
	s   *Server
	st  store.Stream
	log *slog.Logger
	w   io.Writer
	rc  *http.ResponseController

	after      uint64 // stream fragments with a sequence above this
	filter     bool   // skip fragments before fromMS (timestamp selectors)
	fromMS     int64
	byProducer bool

	sent     int
	lastSent uint64
	chunk    []byte
}

func (g *getMediaSession) run(ctx context.Context) {
	s := g.s
	for {
		var batch []store.Fragment
		err := s.store.Scan(g.st.ID, g.after, func(f store.Fragment) bool {
			batch = append(batch, f)
			return len(batch) < 64
		})
		if err != nil {
			g.ended(err)
			return
		}
		cutoff := s.store.RetentionCutoff(g.st)
		for _, f := range batch {
			g.after = f.Seq
			if f.ServerMS < cutoff {
				continue // expired; the sweep has not removed it yet
			}
			if g.filter {
				ts := f.ServerMS
				if g.byProducer {
					ts = f.ProducerMS
				}
				// The first fragment sent contains the timestamp (or starts
				// after it: a future timestamp waits for its fragment).
				if ts+f.DurationMS <= g.fromMS {
					continue
				}
				g.filter = false
			}
			if !g.send(f) {
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		// At the live edge.
		wait := time.Duration(-1) // for as long as it takes
		p, err := s.store.Producer(g.st.ID)
		if err != nil {
			g.ended(err)
			return
		}
		if p.Ended && g.sent > 0 && g.lastSent == p.EndSeq {
			wait = time.UnixMilli(p.EndedMS).Add(s.cfg.GetMediaLinger).Sub(s.cfg.Now())
			if wait <= 0 {
				g.log.Info("GetMedia ended", "reason", "caught up with the end of the producer's stream", "fragments", g.sent)
				return
			}
		}
		wctx, wcancel := ctx, context.CancelFunc(func() {})
		if wait >= 0 {
			wctx, wcancel = context.WithTimeout(ctx, wait)
		}
		err = s.store.WaitAfterProducer(wctx, g.st.ID, g.after, p)
		wcancel()
		if ctx.Err() != nil {
			g.log.Info("GetMedia ended", "reason", "reader or server went away", "fragments", g.sent)
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			g.ended(err)
			return
		}
	}
}

// send writes one fragment's chunk; false when the reader has gone or the
// session had to end.
func (g *getMediaSession) send(f store.Fragment) bool {
	var err error
	g.chunk, err = g.s.mediaChunk(g.chunk[:0], g.st, f)
	if errors.Is(err, store.ErrFragmentNotFound) {
		return true // expired between the scan and the read
	}
	if err != nil {
		g.fail(getMediaErrInternal, "INTERNAL_ERROR", f.Number(), err)
		return false
	}
	if _, err := g.w.Write(g.chunk); err != nil {
		g.log.Info("GetMedia reader went away", "fragments", g.sent)
		return false
	}
	_ = g.rc.Flush()
	g.sent++
	g.lastSent = f.Seq
	return true
}

// ended closes the session after a store error: the stream's deletion is
// told in-band, as the service tells a reader its fragments are gone.
func (g *getMediaSession) ended(err error) {
	if errors.Is(err, store.ErrStreamNotFound) {
		g.fail(getMediaErrNotFound, "STREAM_DELETED", "", errors.New("the stream was deleted"))
		return
	}
	if !errors.Is(err, store.ErrClosed) {
		g.fail(getMediaErrInternal, "INTERNAL_ERROR", "", err)
		return
	}
	g.log.Info("GetMedia ended", "reason", err, "fragments", g.sent)
}

// fail writes the service's in-band error chunk and ends the session.
func (g *getMediaSession) fail(id int, code, number string, err error) {
	g.log.Info("GetMedia ended with an error", "error_id", id, "error_code", code, "cause", err, "fragments", g.sent)
	if _, werr := g.w.Write(g.s.errorChunk(number, id, code+": "+err.Error())); werr == nil {
		_ = g.rc.Flush()
	}
}

// liveFragment parses a fragment number the stream must have, within its
// retention.
func (s *Server) liveFragment(st store.Stream, number string) (uint64, error) {
	seq, err := store.ParseFragmentNumber(number)
	if err != nil {
		return 0, fmt.Errorf("%s is not a fragment number of this server", number)
	}
	f, err := s.store.Fragment(st.ID, seq)
	if err != nil {
		return 0, fmt.Errorf("%s is not a fragment of stream %s", number, st.Name)
	}
	if f.ServerMS < s.store.RetentionCutoff(st) {
		return 0, fmt.Errorf("fragment %s of stream %s is older than the stream's retention period", number, st.Name)
	}
	return seq, nil
}

// mediaChunk appends one fragment as GetMedia sends it: the producer's
// header, the service's tags, the fragment, and the trailing tags.
func (s *Server) mediaChunk(dst []byte, st store.Stream, f store.Fragment) ([]byte, error) {
	header, body, err := s.store.ReadFragment(st.ID, f)
	if err != nil {
		return dst, err
	}
	dst = append(dst, header...)
	dst = mkv.AppendTags(dst,
		mkv.SimpleTag{Name: mkv.TagFragmentNumber, Value: f.Number()},
		mkv.SimpleTag{Name: mkv.TagServerTimestamp, Value: secondsString(f.ServerMS)},
		mkv.SimpleTag{Name: mkv.TagProducerTS, Value: secondsString(f.ProducerMS)},
	)
	dst = appendKnownSize(dst, body)
	behind := s.cfg.Now().UnixMilli() - (f.ServerMS + f.DurationMS)
	return mkv.AppendTags(dst,
		mkv.SimpleTag{Name: mkv.TagMillisBehindNow, Value: strconv.FormatInt(max(behind, 0), 10)},
		mkv.SimpleTag{Name: mkv.TagContinuation, Value: f.Number()},
	), nil
}

// appendKnownSize appends a stored fragment (the producer's Tags, then its
// Cluster) with the Cluster's size written out in eight bytes, as the
// service sends fragments (see the captures in the reference): a producer
// streams a Cluster of unknown size, but the fragment is complete once
// stored, and a reader can then skip it or know it ended without parsing its
// blocks. The Segment stays of unknown size, as the service sends it: with a
// known one ffmpeg stops reading at the end of the first fragment.
func appendKnownSize(dst, body []byte) []byte {
	r := mkv.NewReader(bytes.NewReader(body))
	for {
		e, err := r.Next()
		if err != nil {
			return append(dst, body...) // as stored: nothing better to send
		}
		if e.ID != mkv.IDCluster {
			if err := r.Skip(); err != nil {
				return append(dst, body...)
			}
			continue
		}
		size := uint64(int64(len(body)) - e.DataOffset())
		dst = append(dst, body[:e.Offset]...)
		dst = append(dst, 0x1F, 0x43, 0xB6, 0x75, 0x01)
		dst = append(dst, byte(size>>48), byte(size>>40), byte(size>>32), byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
		return append(dst, body[e.DataOffset():]...)
	}
}

// errorChunk is the chunk the service ends a GetMedia response with on an
// error: an EBML header, a Segment, and Tags with the fragment number (when
// there is one), AWS_KINESISVIDEO_ERROR_CODE and AWS_KINESISVIDEO_ERROR_ID.
// AWS's parser library reads a Segment without a Cluster as such an error.
func (s *Server) errorChunk(number string, id int, code string) []byte {
	dst := append([]byte(nil), s.chunkStart...)
	var tags []mkv.SimpleTag
	if number != "" {
		tags = append(tags, mkv.SimpleTag{Name: mkv.TagFragmentNumber, Value: number})
	}
	tags = append(tags,
		mkv.SimpleTag{Name: mkv.TagErrorCode, Value: code},
		mkv.SimpleTag{Name: mkv.TagErrorID, Value: strconv.Itoa(id)})
	return mkv.AppendTags(dst, tags...)
}

// ebmlAndSegment is the start of every chunk: the EBML header and an
// unknown-size Segment, cut from the mkv package's own header. It panics
// only if that fixed header is broken, when the server is made.
func ebmlAndSegment() []byte {
	hdr, err := mkv.AppendHeader(nil, &mkv.Header{Tracks: []mkv.Track{{Number: 1, Type: mkv.TrackTypeVideo, CodecID: "V_MPEG4/ISO/AVC"}}})
	if err != nil {
		panic(err) // a fixed, valid header
	}
	r := mkv.NewReader(bytes.NewReader(hdr))
	for {
		e, err := r.Next()
		if err != nil {
			panic(err)
		}
		if e.ID == mkv.IDSegment {
			return hdr[:e.DataOffset()]
		}
		if err := r.Skip(); err != nil {
			panic(err)
		}
	}
}

// secondsString formats epoch milliseconds as the service's tags do:
// seconds with three decimals.
func secondsString(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }
