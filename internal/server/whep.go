package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvsgo/kvsgo/internal/live"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/internal/whep"
)

// maxOffer bounds an SDP offer; browsers' are a few kilobytes.
const maxOffer = 64 << 10

// registerWHEP serves the live view over WebRTC (WHEP, RFC 9725): POST
// /whep/STREAM with an SDP offer answers 201 with the SDP answer and the
// session's Location; DELETE on it ends the session. The credentials rule
// is the page's: with credentials configured, the page's login cookie or
// a SigV4 signature over the offer.
func (s *Server) registerWHEP(u *ui) {
	svc, err := whep.New(whep.Config{Hub: s.live, Logger: s.log.With("component", "webrtc"), HostIP: s.cfg.WebRTCHostIP})
	if err != nil {
		s.log.Error("the live view over WebRTC is off", "error", err)
	}
	s.whep = svc
	if svc != nil {
		s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kvsgo_webrtc_viewers", Help: "Open WebRTC (WHEP) viewer sessions, every stream.",
		}, func() float64 { return float64(svc.Sessions()) }))
	}
	s.mux.HandleFunc("POST /whep/{stream}", func(w http.ResponseWriter, r *http.Request) { s.whepOffer(u, w, r) })
	s.mux.HandleFunc("DELETE /whep/{stream}/{id}", func(w http.ResponseWriter, r *http.Request) { s.whepDelete(u, w, r) })
	s.mux.HandleFunc("PATCH /whep/{stream}/{id}", func(w http.ResponseWriter, _ *http.Request) {
		// Trickle ICE: the answer carries every server candidate, and the
		// browser's are learnt from its connectivity checks.
		w.Header().Set("Allow", "DELETE")
		http.Error(w, "kvsgo serve does not take trickled ICE candidates: its answer has all of its own, and it learns the browser's from its connectivity checks", http.StatusMethodNotAllowed)
	})
}

// whepAllowed applies the page's credentials rule to a WHEP request.
func (s *Server) whepAllowed(u *ui, w http.ResponseWriter, r *http.Request, body []byte) bool {
	if u.open() {
		return true
	}
	if u.authorized(r) {
		if !sameOrigin(r) {
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return false
		}
		return true
	}
	if r.Header.Get("Authorization") == "" {
		http.Error(w, "sign in on the page first, or sign the request with SigV4", http.StatusUnauthorized)
		return false
	}
	sum := sha256.Sum256(body)
	if ae := s.authenticate(r, hex.EncodeToString(sum[:])); ae != nil {
		http.Error(w, ae.Message+" ("+ae.Type+")", ae.Status)
		return false
	}
	return true
}

func (s *Server) whepOffer(u *ui, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOffer+1))
	if err != nil {
		http.Error(w, "reading the offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxOffer {
		http.Error(w, "the SDP offer is over 64 KiB", http.StatusRequestEntityTooLarge)
		return
	}
	if !s.whepAllowed(u, w, r, body) {
		return
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/sdp" {
		http.Error(w, "the offer must be an SDP offer (Content-Type: application/sdp)", http.StatusUnsupportedMediaType)
		return
	}
	if s.whep == nil {
		http.Error(w, "the live view over WebRTC is off in this server (see its log); use HLS", http.StatusServiceUnavailable)
		return
	}
	name := r.PathValue("stream")
	if _, err := s.store.Stream(name); err != nil {
		if errors.Is(err, store.ErrStreamNotFound) {
			http.Error(w, "no stream named "+name, http.StatusNotFound)
			return
		}
		http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	id, answer, err := s.whep.Offer(r.Context(), name, string(body))
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, whep.ErrOffer):
			status = http.StatusBadRequest
		case errors.Is(err, live.ErrNotLive), errors.Is(err, live.ErrReordered), errors.Is(err, live.ErrCodec), errors.Is(err, live.ErrNoVideo), errors.Is(err, live.ErrStarting), errors.Is(err, whep.ErrNoH265):
			// The stream exists but cannot be watched live over WebRTC
			// now; the page plays it over HLS.
			status = http.StatusConflict
		case errors.Is(err, live.ErrClosed), errors.Is(err, whep.ErrClosed):
			status = http.StatusServiceUnavailable
		}
		if status == http.StatusInternalServerError {
			s.log.Error("WebRTC offer failed", "stream", name, "error", err)
		}
		http.Error(w, "no live view of "+name+" over WebRTC: "+err.Error(), status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whep/"+name+"/"+id)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func (s *Server) whepDelete(u *ui, w http.ResponseWriter, r *http.Request) {
	if !s.whepAllowed(u, w, r, nil) {
		return
	}
	if s.whep == nil {
		http.Error(w, "no such WebRTC session", http.StatusNotFound)
		return
	}
	id := r.PathValue("id")
	if st, err := s.whep.Stream(id); err != nil || st != r.PathValue("stream") {
		http.Error(w, "no such WebRTC session (it ended, or never was)", http.StatusNotFound)
		return
	}
	_ = s.whep.Delete(id)
	w.WriteHeader(http.StatusOK)
}
