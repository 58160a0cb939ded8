package server

import (
	"time"

	"github.com/kvsgo/kvsgo/internal/playback"
)

// getDASHStreamingSessionURL is GetHLSStreamingSessionURL's twin for
// MPEG-DASH: the same sessions and fMP4 segments, a manifest instead of
// playlists.
func (s *Server) getDASHStreamingSessionURL(req *request) (any, error) {
	var in struct {
		streamRef
		PlaybackMode               string            `json:"PlaybackMode"`
		DASHFragmentSelector       *fragmentSelector `json:"DASHFragmentSelector"`
		DisplayFragmentTimestamp   string            `json:"DisplayFragmentTimestamp"`
		DisplayFragmentNumber      string            `json:"DisplayFragmentNumber"`
		Expires                    *int64            `json:"Expires"`
		MaxManifestFragmentResults *int64            `json:"MaxManifestFragmentResults"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	switch in.DisplayFragmentNumber {
	case "", "ALWAYS", "NEVER":
	default:
		return nil, invalidArgument("DisplayFragmentNumber %q must be ALWAYS or NEVER.", in.DisplayFragmentNumber)
	}
	sess, err := s.newSession(sessionRequest{ref: in.streamRef, kind: playback.KindDASH, mode: in.PlaybackMode,
		selector: in.DASHFragmentSelector, displayTimestamp: in.DisplayFragmentTimestamp, expires: in.Expires,
		maxResults: in.MaxManifestFragmentResults, maxResultsName: "MaxManifestFragmentResults"})
	if err != nil {
		return nil, err
	}
	// The manifest places fragments by their timestamps: no markers.
	sess.Discontinuity = playback.DiscontinuityNever
	token, err := s.prepare(sess)
	if err != nil {
		return nil, err
	}
	s.log.Info("DASH session", "stream", sess.Stream.Name(), "mode", sess.Mode, "expires", sess.Expires.Format(time.RFC3339))
	return map[string]string{"DASHStreamingSessionURL": s.baseURL(req.r) + playback.DASHPath + playback.DASHManifest + "?SessionToken=" + token}, nil
}
