package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
)

// getMedia streams a stream's fragments from a start selector on, follows
// the live edge while a producer is connected, and ends once it has caught
// up and no producer has been connected for GetMediaLinger.
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
	st, err := s.resolve(in.streamRef)
	if err != nil {
		return err
	}
	sel := in.StartSelector
	var after uint64 // stream fragments with a sequence above this
	switch sel.StartSelectorType {
	case "EARLIEST":
	case "NOW":
		if after, err = s.store.Latest(st.Name); err != nil {
			return err
		}
	case "FRAGMENT_NUMBER":
		seq, err := s.existingFragment(st.Name, sel.AfterFragmentNumber, "AfterFragmentNumber")
		if err != nil {
			return err
		}
		after = seq - 1
	case "CONTINUATION_TOKEN":
		seq, err := s.existingFragment(st.Name, sel.ContinuationToken, "ContinuationToken")
		if err != nil {
			return err
		}
		after = seq
	case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
		if sel.StartTimestamp == nil {
			return invalidArgument("StartTimestamp is required with %s.", sel.StartSelectorType)
		}
		if after, err = s.seqBefore(st.Name, sel.StartSelectorType == "PRODUCER_TIMESTAMP", sel.StartTimestamp.UnixMilli()); err != nil {
			return err
		}
	default:
		return invalidArgument("StartSelectorType %q is not one of FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, NOW, EARLIEST, CONTINUATION_TOKEN.", sel.StartSelectorType)
	}
	s.metrics.getMedia.Inc()
	defer s.metrics.getMedia.Dec()
	log := s.log.With("stream", st.Name, "remote", req.r.RemoteAddr)
	log.Info("GetMedia started", "selector", sel.StartSelectorType)

	w := req.w
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	ctx, cancel := context.WithCancel(req.r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	sent := 0
	var chunk []byte
	for {
		var batch []store.Fragment
		err := s.store.Scan(st.Name, after, func(f store.Fragment) bool {
			batch = append(batch, f)
			return len(batch) < 64
		})
		if err != nil {
			log.Info("GetMedia ended", "reason", err, "fragments", sent)
			return nil
		}
		for _, f := range batch {
			if chunk, err = s.mediaChunk(chunk[:0], st.Name, f, true); err != nil {
				log.Warn("GetMedia could not read a fragment", "fragment", f.Number(), "error", err)
				after = f.Seq
				continue
			}
			if _, err := w.Write(chunk); err != nil {
				log.Info("GetMedia reader went away", "fragments", sent)
				return nil
			}
			_ = rc.Flush()
			after = f.Seq
			sent++
		}
		if len(batch) > 0 {
			continue
		}
		idle, seen := s.store.ProducerIdle(st.Name)
		if !seen || idle >= s.cfg.GetMediaLinger {
			log.Info("GetMedia ended", "reason", "caught up, no producer connected", "fragments", sent)
			return nil
		}
		wait := s.cfg.GetMediaLinger - idle
		wctx, wcancel := context.WithTimeout(ctx, wait)
		err = s.store.WaitAfter(wctx, st.Name, after)
		wcancel()
		if ctx.Err() != nil {
			log.Info("GetMedia ended", "reason", "reader or server went away", "fragments", sent)
			return nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Info("GetMedia ended", "reason", err, "fragments", sent)
			return nil
		}
	}
}

// existingFragment parses a fragment number the stream must have.
func (s *Server) existingFragment(stream, number, field string) (uint64, error) {
	if !fragNumRE.MatchString(number) {
		return 0, invalidArgument("%s %q must be a fragment number.", field, number)
	}
	seq, err := store.ParseFragmentNumber(number)
	if err != nil {
		return 0, notFound("%s %s is not a fragment of stream %s.", field, number, stream)
	}
	if _, err := s.store.Fragment(stream, seq); err != nil {
		return 0, notFound("%s %s is not a fragment of stream %s (it may have expired).", field, number, stream)
	}
	return seq, nil
}

// seqBefore returns the sequence after which GetMedia starts for a
// timestamp: the fragment containing it is sent first.
func (s *Server) seqBefore(stream string, producer bool, ms int64) (uint64, error) {
	var after uint64
	err := s.store.Scan(stream, 0, func(f store.Fragment) bool {
		ts := f.ServerMS
		if producer {
			ts = f.ProducerMS
		}
		if ts+f.DurationMS <= ms {
			after = f.Seq
			return true
		}
		return false
	})
	return after, err
}

// mediaChunk appends one fragment as GetMedia sends it: the producer's
// header, the service's tags, the fragment, and the trailing tags.
func (s *Server) mediaChunk(dst []byte, stream string, f store.Fragment, live bool) ([]byte, error) {
	header, body, err := s.store.ReadFragment(stream, f)
	if err != nil {
		return dst, err
	}
	dst = append(dst, header...)
	dst = mkv.AppendTags(dst,
		mkv.SimpleTag{Name: mkv.TagFragmentNumber, Value: f.Number()},
		mkv.SimpleTag{Name: mkv.TagServerTimestamp, Value: secondsString(f.ServerMS)},
		mkv.SimpleTag{Name: mkv.TagProducerTS, Value: secondsString(f.ProducerMS)},
	)
	dst = append(dst, body...)
	behind := s.cfg.Now().UnixMilli() - (f.ServerMS + f.DurationMS)
	tags := []mkv.SimpleTag{{Name: mkv.TagMillisBehindNow, Value: strconv.FormatInt(max(behind, 0), 10)}}
	if live {
		tags = append(tags, mkv.SimpleTag{Name: mkv.TagContinuation, Value: f.Number()})
	}
	return mkv.AppendTags(dst, tags...), nil
}

// secondsString formats epoch milliseconds as the service's tags do:
// seconds with three decimals.
func secondsString(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

// getMediaForFragmentList streams the listed fragments, in the order asked.
func (s *Server) getMediaForFragmentList(req *request) error {
	var in struct {
		streamRef
		Fragments []string `json:"Fragments"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return err
	}
	if len(in.Fragments) < 1 || len(in.Fragments) > 1000 {
		return invalidArgument("Fragments must list 1 to 1000 fragment numbers.")
	}
	st, err := s.resolve(in.streamRef)
	if err != nil {
		return err
	}
	frags := make([]store.Fragment, 0, len(in.Fragments))
	for _, n := range in.Fragments {
		seq, err := s.existingFragment(st.Name, n, "Fragment")
		if err != nil {
			return err
		}
		f, err := s.store.Fragment(st.Name, seq)
		if err != nil {
			return err
		}
		frags = append(frags, f)
	}
	w := req.w
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	var chunk []byte
	for _, f := range frags {
		if chunk, err = s.mediaChunk(chunk[:0], st.Name, f, false); err != nil {
			s.log.Warn("GetMediaForFragmentList could not read a fragment", "stream", st.Name, "fragment", f.Number(), "error", err)
			return nil // the status is sent; ending early is all that is left
		}
		if _, err := w.Write(chunk); err != nil {
			return nil
		}
		_ = rc.Flush()
	}
	return nil
}
