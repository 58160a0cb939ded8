package server

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/kvsgo/kvsgo/internal/playback"
	"github.com/kvsgo/kvsgo/internal/store"
)

// getClip answers GetClip: an MP4 file of a time range, at most its first
// 200 fragments or 100 MB, as the service does.
func (s *Server) getClip(req *request) error {
	var in struct {
		streamRef
		ClipFragmentSelector *fragmentSelector `json:"ClipFragmentSelector"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return err
	}
	sel := in.ClipFragmentSelector
	if sel == nil || sel.TimestampRange == nil || sel.TimestampRange.StartTimestamp == nil || sel.TimestampRange.EndTimestamp == nil {
		return invalidArgument("ClipFragmentSelector with FragmentSelectorType and a TimestampRange (StartTimestamp and EndTimestamp) is required.")
	}
	var producer bool
	switch sel.FragmentSelectorType {
	case "PRODUCER_TIMESTAMP":
		producer = true
	case "SERVER_TIMESTAMP":
	default:
		return invalidArgument("FragmentSelectorType %q must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP.", sel.FragmentSelectorType)
	}
	clip, st, err := s.clip(in.streamRef, producer, sel.TimestampRange.StartTimestamp.Time, sel.TimestampRange.EndTimestamp.Time)
	if err != nil {
		return err
	}
	req.w.Header().Set("Content-Type", "video/mp4")
	if err := clip.Write(req.w); err != nil {
		s.log.Info("GetClip: the reader went away", "stream", st.Name, "error", err)
	}
	return nil
}

// WriteClip writes an MP4 clip of a producer-time range of a stream, for
// the web page: GetClip's selection, limits and errors, without a SigV4
// request (the page's own login stands for the caller). Nothing is written
// when it fails.
func (s *Server) WriteClip(_ context.Context, w io.Writer, stream string, start, end time.Time) error {
	clip, _, err := s.clip(streamRef{StreamName: stream}, true, start, end)
	if err != nil {
		return err
	}
	return clip.Write(w)
}

// clip validates a clip's range as the service does and prepares the
// clip: every fragment read and remuxed before the first byte goes out, so
// that a failure is still an error response.
func (s *Server) clip(ref streamRef, producer bool, start, end time.Time) (*playback.ClipFile, store.Stream, error) {
	switch {
	case !end.After(start):
		return nil, store.Stream{}, invalidArgument("EndTimestamp must be later than StartTimestamp.")
	case end.Sub(start) > 24*time.Hour:
		return nil, store.Stream{}, invalidArgument("EndTimestamp must be within 24 hours of StartTimestamp.")
	case !producer && end.After(s.cfg.Now()):
		return nil, store.Stream{}, invalidArgument("With SERVER_TIMESTAMP, EndTimestamp must be in the past.")
	}
	st, err := s.resolveActive(ref)
	if err != nil {
		return nil, st, err
	}
	if st.RetentionHours == 0 {
		return nil, st, errorf(http.StatusBadRequest, "NoDataRetentionException",
			"Stream %s keeps no data (DataRetentionInHours is 0), so it has no clips. Give it a retention period with update-data-retention.", st.Name)
	}
	sess := playback.Session{Stream: st.ID, Mode: playback.ModeOnDemand, ProducerTime: producer, Start: start, End: end}
	frags, err := s.playback.ClipFragments(st.ID, producer, start, end)
	if err != nil {
		return nil, st, playbackError(err, sess)
	}
	parsed := make([]*playback.Fragment, len(frags))
	places := make([]playback.Placement, len(frags))
	for i, f := range frags {
		if parsed[i], err = s.playback.Load(st.ID, f); err != nil {
			return nil, st, playbackError(err, sess)
		}
		places[i] = sess.Placement(f)
	}
	clip, err := playback.NewClip(parsed, places)
	if err != nil {
		return nil, st, playbackError(err, sess)
	}
	s.log.Info("GetClip", "stream", st.Name, "fragments", len(frags))
	return clip, st, nil
}
