package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kvsgo/kvsgo/internal/playback"
	"github.com/kvsgo/kvsgo/internal/store"
)

// getHLSStreamingSessionURL validates the request as the service does,
// checks there is something to play, and returns the master playlist's URL
// with a signed session token.
func (s *Server) getHLSStreamingSessionURL(req *request) (any, error) {
	var in struct {
		streamRef
		PlaybackMode                    string            `json:"PlaybackMode"`
		HLSFragmentSelector             *fragmentSelector `json:"HLSFragmentSelector"`
		ContainerFormat                 string            `json:"ContainerFormat"`
		DiscontinuityMode               string            `json:"DiscontinuityMode"`
		DisplayFragmentTimestamp        string            `json:"DisplayFragmentTimestamp"`
		Expires                         *int64            `json:"Expires"`
		MaxMediaPlaylistFragmentResults *int64            `json:"MaxMediaPlaylistFragmentResults"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	var ts bool
	switch in.ContainerFormat {
	case "FRAGMENTED_MP4", "":
	case "MPEG_TS":
		ts = true
	default:
		return nil, invalidArgument("ContainerFormat %q must be FRAGMENTED_MP4 or MPEG_TS.", in.ContainerFormat)
	}
	sess, err := s.newSession(sessionRequest{ref: in.streamRef, kind: playback.KindHLS, mode: in.PlaybackMode,
		selector: in.HLSFragmentSelector, displayTimestamp: in.DisplayFragmentTimestamp, expires: in.Expires,
		maxResults: in.MaxMediaPlaylistFragmentResults, maxResultsName: "MaxMediaPlaylistFragmentResults"})
	if err != nil {
		return nil, err
	}
	sess.TS = ts
	// The service's default: markers where server timestamps may not join
	// up, none for producer timestamps.
	sess.Discontinuity = playback.DiscontinuityAlways
	if sess.ProducerTime {
		sess.Discontinuity = playback.DiscontinuityNever
	}
	switch in.DiscontinuityMode {
	case "":
	case "ALWAYS":
		sess.Discontinuity = playback.DiscontinuityAlways
	case "NEVER":
		sess.Discontinuity = playback.DiscontinuityNever
	case "ON_DISCONTINUITY":
		sess.Discontinuity = playback.DiscontinuityOnGap
	default:
		return nil, invalidArgument("DiscontinuityMode %q must be ALWAYS, NEVER or ON_DISCONTINUITY.", in.DiscontinuityMode)
	}
	token, err := s.prepare(sess)
	if err != nil {
		return nil, err
	}
	s.log.Info("HLS session", "stream", sess.Stream.Name(), "mode", sess.Mode, "expires", sess.Expires.Format(time.RFC3339))
	return map[string]string{"HLSStreamingSessionURL": s.baseURL(req.r) + playback.HLSPath + playback.HLSMaster + "?SessionToken=" + token}, nil
}

// NewSession creates an HLS session for the web page, which calls it from
// its own authenticated route rather than with a SigV4 request. mode is
// LIVE, LIVE_REPLAY or ON_DEMAND; start and end (producer timestamps) bound
// the replay modes and are ignored for LIVE; a zero end leaves LIVE_REPLAY
// open. The session is fragmented MP4 with EXT-X-PROGRAM-DATE-TIME, lasts
// 12 hours, and the URL returned is root-relative
// (/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=…), for the page to
// give hls.js as it is. Errors are the service's (e.g.
// ResourceNotFoundException when there is nothing to play), with messages
// meant for people.
func (s *Server) NewSession(_ context.Context, stream, mode string, start, end time.Time) (string, error) {
	req := sessionRequest{ref: streamRef{StreamName: stream}, kind: playback.KindHLS, mode: mode,
		displayTimestamp: "ALWAYS", expires: ptr(int64(maxExpires))}
	if mode != "LIVE" {
		sel := &fragmentSelector{FragmentSelectorType: "PRODUCER_TIMESTAMP"}
		sel.TimestampRange = &struct {
			StartTimestamp *epochTime `json:"StartTimestamp"`
			EndTimestamp   *epochTime `json:"EndTimestamp"`
		}{StartTimestamp: &epochTime{start}}
		if !end.IsZero() {
			sel.TimestampRange.EndTimestamp = &epochTime{end}
		}
		req.selector = sel
	} else {
		req.selector = &fragmentSelector{FragmentSelectorType: "PRODUCER_TIMESTAMP"}
	}
	sess, err := s.newSession(req)
	if err != nil {
		return "", err
	}
	sess.Discontinuity = playback.DiscontinuityOnGap
	token, err := s.prepare(sess)
	if err != nil {
		return "", err
	}
	return playback.HLSPath + playback.HLSMaster + "?SessionToken=" + token, nil
}

func ptr[T any](v T) *T { return &v }

// playbackResource serves what a session's player fetches: playlists,
// manifests, initialization and media segments. Each request carries the
// session token; a missing, forged or expired one is refused with 403.
func (s *Server) playbackResource(kind playback.Kind) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resource := r.PathValue("resource")
		start := s.cfg.Now()
		status := http.StatusOK
		defer func() { s.metrics.request(trimExt(resource), status, s.cfg.Now().Sub(start)) }()
		body, ctype, err := s.servePlayback(r, kind, resource)
		if err != nil {
			ae := toAPIError(err)
			status = ae.Status
			if ae.Status >= 500 {
				s.log.Error("playback request failed", "resource", resource, "error", err)
			}
			writeError(w, ae)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		// Playlists change; segments of a fragment never do.
		if ctype == "application/vnd.apple.mpegurl" || ctype == "application/dash+xml" {
			h.Set("Cache-Control", "no-cache")
		} else {
			h.Set("Cache-Control", "private, max-age=3600")
		}
		_, _ = w.Write(body)
	})
}

func trimExt(resource string) string {
	for i := len(resource) - 1; i >= 0; i-- {
		if resource[i] == '.' {
			return resource[:i]
		}
	}
	return resource
}

func (s *Server) servePlayback(r *http.Request, kind playback.Kind, resource string) ([]byte, string, error) {
	known := map[string]bool{playback.MP4Init: true, playback.MP4Media: true}
	if kind == playback.KindHLS {
		known[playback.HLSMaster], known[playback.HLSMedia], known[playback.TSFragment] = true, true, true
	} else {
		known[playback.DASHManifest] = true
	}
	if !known[resource] {
		return nil, "", errorf(http.StatusNotFound, "UnknownOperationException", "kvsgo serve has no playback resource %s", r.URL.Path)
	}
	sess, id, err := s.sessionOf(r, kind)
	if err != nil {
		return nil, "", err
	}
	q := r.URL.Query()
	body, ctype, err := s.playbackBody(r.Context(), sess, id, q.Get("SessionToken"), resource, q.Get("TrackNumber"), q.Get("FragmentNumber"), q.Get("_HLS_msn"))
	if err != nil {
		return nil, "", playbackError(err, sess)
	}
	return body, ctype, nil
}

func (s *Server) playbackBody(ctx context.Context, sess playback.Session, id, token, resource, trackParam, fragParam, msnParam string) ([]byte, string, error) {
	switch resource {
	case playback.HLSMaster:
		win, err := s.playback.Window(sess, id)
		if err != nil {
			return nil, "", err
		}
		tracks, err := s.initTracks(sess, win.Entries, "")
		if err != nil {
			return nil, "", err
		}
		b, err := playback.MasterPlaylist(sess, token, tracks, playback.Bandwidth(win.Entries))
		return b, "application/vnd.apple.mpegurl", err
	case playback.HLSMedia:
		var track uint64
		if !sess.TS {
			var err error
			if track, err = trackNumber(trackParam); err != nil {
				return nil, "", err
			}
		}
		win, err := s.window(ctx, sess, id, msnParam)
		if err != nil {
			return nil, "", err
		}
		b, err := playback.MediaPlaylist(sess, token, win, track)
		return b, "application/vnd.apple.mpegurl", err
	case playback.DASHManifest:
		win, err := s.playback.Window(sess, id)
		if err != nil {
			return nil, "", err
		}
		tracks, err := s.initTracks(sess, win.Entries, "")
		if err != nil {
			return nil, "", err
		}
		b, err := playback.Manifest(sess, token, win, tracks, s.cfg.Now())
		return b, "application/dash+xml", err
	case playback.MP4Init:
		if sess.TS {
			return nil, "", invalidArgument("This session's container format is MPEG_TS: it has no MP4 initialization fragment.")
		}
		track, err := trackNumber(trackParam)
		if err != nil {
			return nil, "", err
		}
		win, err := s.playback.Window(sess, id)
		if err != nil {
			return nil, "", err
		}
		tracks, err := s.initTracks(sess, win.Entries, fragParam)
		if err != nil {
			return nil, "", err
		}
		for _, t := range tracks {
			if t.Number == track {
				b, err := playback.InitSegment([]*playback.Track{t})
				return b, "video/mp4", err
			}
		}
		return nil, "", invalidArgument("TrackNumber %d is not a track of this stream.", track)
	case playback.MP4Media, playback.TSFragment:
		if sess.TS != (resource == playback.TSFragment) {
			return nil, "", invalidArgument("%s does not serve this session's container format.", resource)
		}
		var track uint64
		if !sess.TS {
			var err error
			if track, err = trackNumber(trackParam); err != nil {
				return nil, "", err
			}
		}
		if fragParam == "" {
			return nil, "", invalidArgument("FragmentNumber is required.")
		}
		f, err := s.playback.Fragment(sess, fragParam)
		if err != nil {
			return nil, "", err
		}
		frag, err := s.playback.Load(sess.Stream, f)
		if err != nil {
			return nil, "", err
		}
		if sess.TS {
			b, err := playback.TSSegment(frag, sess.Placement(f))
			return b, "video/mp2t", err
		}
		if frag.Track(track) == nil {
			return nil, "", invalidArgument("Fragment %s has no track %d.", fragParam, track)
		}
		b, err := playback.MediaSegment(frag, []uint64{track}, sess.Placement(f))
		return b, "video/mp4", err
	}
	return nil, "", fmt.Errorf("playback resource %s", resource)
}

// window returns a session's playlist; with _HLS_msn (a blocking playlist
// reload) it waits until that segment is in it, at most three target
// durations.
func (s *Server) window(ctx context.Context, sess playback.Session, id, msnParam string) (playback.Window, error) {
	if msnParam == "" || sess.Mode != playback.ModeLive {
		return s.playback.Window(sess, id)
	}
	msn, err := strconv.ParseUint(msnParam, 10, 63)
	if err != nil {
		return playback.Window{}, invalidArgument("_HLS_msn %q must be a media sequence number.", msnParam)
	}
	win, err := s.playback.Window(sess, id)
	if err != nil {
		return win, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.ctx, stop)()
	return s.playback.WaitWindow(ctx, sess, id, msn, 3*win.TargetDuration)
}

// trackNumber reads TrackNumber: required for fMP4 sessions, 1 or 2.
func trackNumber(param string) (uint64, error) {
	if param == "" {
		return 0, invalidArgument("TrackNumber is required for a FRAGMENTED_MP4 session.")
	}
	n, err := strconv.ParseUint(param, 10, 8)
	if err != nil || n == 0 {
		return 0, invalidArgument("TrackNumber %q must be a track number such as 1 or 2.", param)
	}
	return n, nil
}

// initTracks returns the tracks of the codec configuration a playlist
// names (by the fragment that first had it), or of the window's first
// entry. Any fragment of the window with that configuration serves: the
// one that first had it may have expired while the rest play on.
func (s *Server) initTracks(sess playback.Session, entries []playback.Entry, fragParam string) ([]*playback.Track, error) {
	var f store.Fragment
	switch {
	case fragParam != "":
		seq, err := store.ParseFragmentNumber(fragParam)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", playback.ErrNotInSession, fragParam)
		}
		i := slices.IndexFunc(entries, func(e playback.Entry) bool { return e.Init == seq })
		if i >= 0 {
			f = entries[i].Fragment
		} else if f, err = s.playback.Fragment(sess, fragParam); err != nil {
			return nil, err
		}
	case len(entries) > 0:
		f = entries[0].Fragment
	default:
		return nil, playback.ErrNoFragments
	}
	return s.playback.Tracks(sess.Stream, f)
}
