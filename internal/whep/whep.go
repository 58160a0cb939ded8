// Package whep sends live streams to browsers over WebRTC: one
// PeerConnection per viewer (pion/webrtc), negotiated with WHEP's one SDP
// offer and answer, fed by a live.Hub. Only host candidates are offered —
// no STUN or TURN server is contacted — so viewers on the same machine or
// LAN connect directly.
package whep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/live"
)

// Errors callers can test for.
var (
	// ErrNoSession: no session has that ID (it ended, or never was).
	ErrNoSession = errors.New("no such WebRTC session")
	// ErrOffer: the SDP offer is unusable; the error says why.
	ErrOffer = errors.New("unusable SDP offer")
	// ErrClosed: the service is shutting down.
	ErrClosed = errors.New("the server is shutting down")
	// ErrNoH265: the stream is H.265 and the offer does not receive it.
	// Browsers offer H.265 over WebRTC only where the platform decodes it
	// (Safari; Chrome with hardware decoding).
	ErrNoH265 = errors.New("this browser does not offer H.265 over WebRTC; the page plays it over HLS")
)

// Config configures a Service.
type Config struct {
	Hub    *live.Hub
	Logger *slog.Logger
	// HostIP keeps the local addresses whose host candidates are offered;
	// loopback addresses only when nil.
	HostIP func(net.IP) bool
	// ConnectTimeout ends a session that is not connected this long after
	// its answer; 20 s when zero.
	ConnectTimeout time.Duration
}

// Service holds the WebRTC sessions. Create it with New; Close ends them.
type Service struct {
	cfg Config
	log *slog.Logger
	api *webrtc.API

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	wg       sync.WaitGroup
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HostIP == nil {
		cfg.HostIP = func(ip net.IP) bool { return ip.IsLoopback() }
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 20 * time.Second
	}
	m := &webrtc.MediaEngine{}
	if err := registerH264(m); err != nil {
		return nil, err
	}
	if err := registerH265(m); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	// NACK (resend lost packets), RTCP reports, TWCC: what browsers expect
	// of a sender.
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("WebRTC interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetIPFilter(cfg.HostIP)
	se.SetIncludeLoopbackCandidate(true)
	// Browsers hide their addresses behind mDNS names; their connectivity
	// checks reveal the address anyway, so no multicast is needed.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.LoggerFactory = slogLoggerFactory{cfg.Logger}
	return &Service{
		cfg: cfg, log: cfg.Logger, sessions: map[string]*session{},
		api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)),
	}, nil
}

// registerH264 offers H.264 in the profiles browsers ask for. The answer
// names the browser's payload types; the stream is sent as the producer
// made it, whichever profile is agreed, as browsers decode any of them.
func registerH264(m *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for i, profile := range []string{"42e01f", "42001f", "4d001f", "64001f"} {
		c := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile, RTCPFeedback: fb},
			PayloadType: webrtc.PayloadType(102 + 2*i),
		}
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("registering H.264: %w", err)
		}
	}
	return nil
}

// registerH265 offers H.265 as browsers that have it do: Main and Main 10,
// main tier, one RTP stream (draft-ietf-avtcore-hevc-webrtc). The level is
// not negotiated (W3C WebRTC's codec match without level-id).
func registerH265(m *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for i, profile := range []string{"1", "2"} {
		c := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000,
				SDPFmtpLine: "level-id=93;profile-id=" + profile + ";tier-flag=0;tx-mode=SRST", RTCPFeedback: fb},
			PayloadType: webrtc.PayloadType(116 + 2*i),
		}
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("registering H.265: %w", err)
		}
	}
	return nil
}

// offersH265 reports whether an SDP offer receives H.265 video.
func offersH265(offer string) (bool, error) {
	sd, err := (&webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}).Unmarshal()
	if err != nil {
		return false, err
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		for _, a := range md.Attributes {
			// a=rtpmap:PT H265/90000
			if _, enc, ok := strings.Cut(a.Value, " "); a.Key == "rtpmap" && ok && strings.HasPrefix(strings.ToUpper(enc), "H265/") {
				return true, nil
			}
		}
	}
	return false, nil
}

// mimeType is the RTP name of a live stream's codec.
func mimeType(c codec.Codec) string {
	if c == codec.H265 {
		return webrtc.MimeTypeH265
	}
	return webrtc.MimeTypeH264
}

// Offer answers a viewer's SDP offer for a live stream and starts sending
// it. It returns the session's ID (for Delete) and the SDP answer, with
// all of the server's candidates (no trickle ICE). It fails with one of
// live's reasons when the stream cannot be watched live, or ErrOffer.
func (s *Service) Offer(ctx context.Context, stream, offer string) (id, answer string, err error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return "", "", ErrClosed
	}
	// The viewer joins the stream once connected (send): what is sent
	// before would be lost, its first key frame with it.
	if err := s.cfg.Hub.Status(stream); err != nil {
		return "", "", err
	}
	// H.264 goes to every browser; H.265 to those that offer it.
	kind := s.cfg.Hub.Codec(stream)
	if kind == codec.H265 {
		ok, err := offersH265(offer)
		if err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrOffer, err)
		}
		if !ok {
			return "", "", ErrNoH265
		}
	}
	sess := &session{s: s, stream: stream, codec: kind, stop: make(chan struct{}), connected: make(chan struct{})}
	defer func() {
		if err != nil {
			if sess.pc != nil {
				_ = sess.pc.Close()
			}
		}
	}()
	if sess.pc, err = s.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return "", "", fmt.Errorf("making a PeerConnection: %w", err)
	}
	if err = sess.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrOffer, err)
	}
	if sess.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mimeType(kind), ClockRate: 90000}, "video", "kvsgo"); err != nil {
		return "", "", err
	}
	sender, err := sess.pc.AddTrack(sess.track)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrOffer, err)
	}
	ans, err := sess.pc.CreateAnswer(nil)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(sess.pc)
	if err = sess.pc.SetLocalDescription(ans); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrOffer, err)
	}
	if !sends(sess.pc, sender) {
		if kind == codec.H265 {
			return "", "", fmt.Errorf("%w: it does not receive H.265 video in a profile kvsgo sends (Main or Main 10, main tier, tx-mode SRST)", ErrOffer)
		}
		return "", "", fmt.Errorf("%w: it does not receive H.264 video (packetization-mode=1)", ErrOffer)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
	id = newID()
	sess.id = id
	sess.pc.OnConnectionStateChange(sess.stateChanged)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", "", ErrClosed
	}
	s.sessions[id] = sess
	s.wg.Add(2)
	s.mu.Unlock()
	go sess.send()
	go sess.readRTCP(sender)
	s.log.Info("WebRTC viewer answered", "stream", stream, "session", id)
	return id, sess.pc.LocalDescription().SDP, nil
}

// sends reports whether the answer sends the track: a video m-line of the
// offer took it, with a codec both sides have.
func sends(pc *webrtc.PeerConnection, sender *webrtc.RTPSender) bool {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == sender && tr.Mid() != "" && len(sender.GetParameters().Codecs) > 0 {
			return true
		}
	}
	return false
}

// Delete ends a session (WHEP's DELETE).
func (s *Service) Delete(id string) error {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return ErrNoSession
	}
	sess.end("the viewer hung up")
	return nil
}

// Stream returns the stream a session watches.
func (s *Service) Stream(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		return sess.stream, nil
	}
	return "", ErrNoSession
}

// Sessions returns how many sessions are open.
func (s *Service) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Close ends every session and waits for them, at most until ctx ends.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		sess.end("the server is shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// session is one viewer's PeerConnection.
type session struct {
	s      *Service
	id     string
	stream string
	codec  codec.Codec // the codec the answer sends
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP

	once      sync.Once
	stop      chan struct{}
	connOnce  sync.Once
	connected chan struct{}
}

func (sess *session) stateChanged(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		sess.connOnce.Do(func() { close(sess.connected) })
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		// Not inline: Close waits for this callback's goroutine.
		go sess.end("the connection " + st.String())
	}
}

// end stops the session once: it is forgotten at once, and the sender
// returns and closes the PeerConnection.
func (sess *session) end(why string) {
	sess.once.Do(func() {
		sess.s.mu.Lock()
		delete(sess.s.sessions, sess.id)
		sess.s.mu.Unlock()
		sess.s.log.Info("WebRTC viewer left", "stream", sess.stream, "session", sess.id, "why", why)
		close(sess.stop)
	})
}

// send waits for the connection, joins the stream and writes its frames
// to the track until the session ends. Sequence numbers are the viewer's
// own and run on without a gap, even where it skipped frames to catch up:
// the skip ends at a key frame.
func (sess *session) send() {
	defer sess.s.wg.Done()
	defer func() {
		sess.end("done")
		_ = sess.pc.Close()
	}()
	timeout := time.NewTimer(sess.s.cfg.ConnectTimeout)
	select {
	case <-sess.stop:
		timeout.Stop()
		return
	case <-sess.connected:
		timeout.Stop()
	case <-timeout.C:
		sess.end(fmt.Sprintf("not connected after %s (is UDP between the browser and the server blocked?)", sess.s.cfg.ConnectTimeout))
		return
	}
	viewer, err := sess.s.cfg.Hub.Subscribe(sess.stream)
	if err != nil {
		sess.end("the stream cannot be watched live any more: " + err.Error())
		return
	}
	defer viewer.Close()
	if viewer.Codec() != sess.codec {
		sess.end("the stream's producer switched codec; connect again")
		return
	}
	sess.s.log.Info("WebRTC viewer joined", "stream", sess.stream, "session", sess.id, "viewers", sess.s.cfg.Hub.Viewers(sess.stream))
	var seq uint16
	for {
		select {
		case <-sess.stop:
			return
		case <-viewer.Done():
			sess.end("the stream cannot be watched live any more: " + viewer.Err().Error())
			return
		case f := <-viewer.Frames():
			for _, p := range f.Packets {
				pkt := *p
				pkt.SequenceNumber = seq
				seq++
				if err := sess.track.WriteRTP(&pkt); err != nil {
					sess.end("sending failed: " + err.Error())
					return
				}
			}
		}
	}
}

// readRTCP reads the viewer's RTCP (receiver reports, NACKs, PLIs) so that
// the interceptors act on it, until the PeerConnection closes.
func (sess *session) readRTCP(sender *webrtc.RTPSender) {
	defer sess.s.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}
