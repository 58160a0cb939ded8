package server

import (
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"github.com/kvsgo/kvsgo/internal/playback"
)

// sessionSecretFile holds the key that signs playback session tokens, in
// the data directory, so that sessions survive a restart.
const sessionSecretFile = "session.key"

// newPlayback sets up playback sessions with the data directory's secret
// (or, if it cannot be kept there, a secret for this run only).
func (s *Server) newPlayback() *playback.Sessions {
	key, err := s.store.Secret(sessionSecretFile, 32)
	if err != nil {
		s.log.Warn("playback sessions will not survive a restart: the session secret cannot be kept in the data directory", "error", err)
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	signer, err := playback.NewSigner(key)
	if err != nil {
		panic(err) // 32 bytes always do
	}
	return &playback.Sessions{Source: s.store, Signer: signer, Logger: s.log, Now: s.cfg.Now}
}

// sessionRequest is what GetHLSStreamingSessionURL and
// GetDASHStreamingSessionURL have in common.
type sessionRequest struct {
	ref              streamRef
	kind             playback.Kind
	mode             string
	selector         *fragmentSelector
	displayTimestamp string
	expires          *int64
	maxResults       *int64
	maxResultsName   string
}

// Session expiry, as the service bounds it (seconds).
const (
	minExpires     = 300
	maxExpires     = 43200
	defaultExpires = 300
)

// newSession validates a session request as the service does and returns
// the session, not yet prepared.
func (s *Server) newSession(in sessionRequest) (playback.Session, error) {
	sess := playback.Session{Kind: in.kind, Mode: playback.ModeLive}
	if in.mode != "" {
		m, ok := playback.ParseMode(in.mode)
		if !ok {
			return sess, invalidArgument("PlaybackMode %q must be LIVE, LIVE_REPLAY or ON_DEMAND.", in.mode)
		}
		sess.Mode = m
	}
	sel := in.selector
	if sel != nil {
		switch sel.FragmentSelectorType {
		case "PRODUCER_TIMESTAMP":
			sess.ProducerTime = true
		case "SERVER_TIMESTAMP", "":
		default:
			return sess, invalidArgument("FragmentSelectorType %q must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP.", sel.FragmentSelectorType)
		}
	}
	hasRange := sel != nil && sel.TimestampRange != nil
	switch sess.Mode {
	case playback.ModeLive:
		if hasRange {
			return sess, invalidArgument("TimestampRange must not be set when PlaybackMode is LIVE.")
		}
	default:
		if !hasRange || sel.TimestampRange.StartTimestamp == nil {
			return sess, invalidArgument("PlaybackMode %s needs a fragment selector with a TimestampRange and its StartTimestamp.", sess.Mode)
		}
		tr := sel.TimestampRange
		sess.Start = tr.StartTimestamp.Time
		if tr.EndTimestamp != nil {
			sess.End = tr.EndTimestamp.Time
			if !sess.End.After(sess.Start) {
				return sess, invalidArgument("EndTimestamp must be later than StartTimestamp.")
			}
			if sess.End.Sub(sess.Start) > 24*time.Hour {
				return sess, invalidArgument("EndTimestamp must be within 24 hours of StartTimestamp.")
			}
			if !sess.ProducerTime && sess.End.After(s.cfg.Now()) {
				return sess, invalidArgument("With SERVER_TIMESTAMP, EndTimestamp must be in the past.")
			}
		} else if sess.Mode == playback.ModeOnDemand {
			return sess, invalidArgument("EndTimestamp is required when PlaybackMode is ON_DEMAND.")
		}
	}
	switch in.displayTimestamp {
	case "ALWAYS":
		sess.DisplayTimestamp = true
	case "NEVER", "":
	default:
		return sess, invalidArgument("DisplayFragmentTimestamp %q must be ALWAYS or NEVER.", in.displayTimestamp)
	}
	expires := int64(defaultExpires)
	if in.expires != nil {
		expires = *in.expires
		if expires < minExpires || expires > maxExpires {
			return sess, invalidArgument("Expires must be between %d and %d seconds.", minExpires, maxExpires)
		}
	}
	sess.MaxResults = playback.DefaultMaxResults(sess.Mode)
	if in.maxResults != nil {
		if *in.maxResults < 1 || *in.maxResults > playback.MaxResults {
			return sess, invalidArgument("%s must be between 1 and %d.", in.maxResultsName, playback.MaxResults)
		}
		sess.MaxResults = int(*in.maxResults)
	}
	st, err := s.resolveActive(in.ref)
	if err != nil {
		return sess, err
	}
	if st.RetentionHours == 0 {
		return sess, errorf(http.StatusBadRequest, "NoDataRetentionException",
			"Stream %s keeps no data (DataRetentionInHours is 0), so it cannot be played back. Give it a retention period with update-data-retention.", st.Name)
	}
	sess.Stream = st.ID
	now := s.cfg.Now()
	sess.Created, sess.Expires = now, now.Add(time.Duration(expires)*time.Second)
	return sess, nil
}

// prepare completes a session and returns its token.
func (s *Server) prepare(sess playback.Session) (string, error) {
	if err := s.playback.Prepare(&sess); err != nil {
		return "", playbackError(err, sess)
	}
	return s.playback.Signer.Token(sess), nil
}

// playbackError maps playback's errors to the service's.
func playbackError(err error, sess playback.Session) error {
	switch {
	case errors.Is(err, playback.ErrNoFragments):
		if sess.Mode == playback.ModeLive {
			return notFound("Stream %s has no fragments from the last 30 seconds to play live. Is a producer sending to it? (%v)", sess.Stream.Name(), err)
		}
		return notFound("Stream %s has no fragments in the requested time range (%s).", sess.Stream.Name(), rangeString(sess))
	case errors.Is(err, playback.ErrStreamGone):
		return notFound("Stream %s of this session was deleted.", sess.Stream.Name())
	case errors.Is(err, playback.ErrNotInSession), errors.Is(err, playback.ErrExpired):
		return notFound("%v.", err)
	case errors.Is(err, playback.ErrUnsupportedMedia):
		return errorf(http.StatusBadRequest, "UnsupportedStreamMediaTypeException", "%v", err)
	case errors.Is(err, playback.ErrMissingCodecPrivate):
		return errorf(http.StatusBadRequest, "MissingCodecPrivateDataException", "%v", err)
	case errors.Is(err, playback.ErrInvalidCodecPrivate):
		return errorf(http.StatusBadRequest, "InvalidCodecPrivateDataException", "%v", err)
	case errors.Is(err, playback.ErrInvalidMedia):
		return errorf(http.StatusBadRequest, "InvalidMediaFrameException", "%v", err)
	case errors.Is(err, playback.ErrTokenInvalid), errors.Is(err, playback.ErrTokenExpired), errors.Is(err, playback.ErrTokenVersion):
		return errorf(http.StatusForbidden, "NotAuthorizedException", "%v", err)
	}
	return err
}

func rangeString(sess playback.Session) string {
	clock := "server"
	if sess.ProducerTime {
		clock = "producer"
	}
	end := "now"
	if !sess.End.IsZero() {
		end = sess.End.Format(time.RFC3339Nano)
	}
	return clock + " timestamps " + sess.Start.Format(time.RFC3339Nano) + " to " + end
}

// sessionOf checks a player request's session token: signature, expiry
// and protocol. Whether its stream still exists (the same identity, not
// just the name) playback checks on every read.
func (s *Server) sessionOf(r *http.Request, kind playback.Kind) (playback.Session, string, error) {
	token := r.URL.Query().Get("SessionToken")
	if token == "" {
		return playback.Session{}, "", errorf(http.StatusForbidden, "NotAuthorizedException", "The SessionToken parameter is missing: use the URL GetHLSStreamingSessionURL or GetDASHStreamingSessionURL returned.")
	}
	sess, id, err := s.playback.Signer.Parse(token, s.cfg.Now())
	switch {
	case errors.Is(err, playback.ErrTokenExpired):
		return sess, "", errorf(http.StatusForbidden, "NotAuthorizedException", "The session has expired: ask for a new streaming session URL.")
	case errors.Is(err, playback.ErrTokenVersion):
		return sess, "", errorf(http.StatusForbidden, "NotAuthorizedException", "The session was issued by another version of kvsgo serve: ask for a new streaming session URL.")
	case err != nil:
		return sess, "", errorf(http.StatusForbidden, "NotAuthorizedException", "The session token is not valid for this server: use the URL GetHLSStreamingSessionURL or GetDASHStreamingSessionURL returned.")
	case sess.Kind != kind:
		return sess, "", errorf(http.StatusForbidden, "NotAuthorizedException", "The session token is for another streaming protocol.")
	}
	return sess, id, nil
}
