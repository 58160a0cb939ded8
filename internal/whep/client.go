package whep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// Client is a WHEP viewer: a receive-only PeerConnection that counts the
// H.264 (or, offered with WithH265, H.265) video it gets. The tests and the viewer benchmark
// (scripts/viewersprobe) use it.
type Client struct {
	pc       *webrtc.PeerConnection
	http     *http.Client
	location string // the session's URL, for DELETE
	sign     func(*http.Request) error
	done     chan struct{} // the track reader returned

	mu        sync.Mutex
	stats     ClientStats
	lastSeq   uint16
	connected chan struct{}
	connOnce  sync.Once
	reading   bool // a goroutine reads the track; it closes done

	opts    dialOptions
	depack  rtp.Depacketizer
	partial []byte   // the access unit being received (WithAccessUnits)
	aus     [][]byte // the access units received, Annex-B
}

// DialOption changes what a Client offers or keeps.
type DialOption func(*dialOptions)

type dialOptions struct{ h265, keepAUs bool }

// WithH265 offers H.265 besides H.264, as a browser that decodes it does.
func WithH265() DialOption { return func(o *dialOptions) { o.h265 = true } }

// WithAccessUnits keeps every access unit received, depacketized (Annex-B
// byte stream), for AccessUnits: for tests that compare them with the
// source.
func WithAccessUnits() DialOption { return func(o *dialOptions) { o.keepAUs = true } }

// ClientStats is what a Client received.
type ClientStats struct {
	Packets, Bytes int
	// Frames counts RTP packets with the marker bit: the ends of frames.
	Frames int
	// Lost counts sequence numbers skipped.
	Lost int
	// MimeType is the negotiated codec: video/H264 or video/H265.
	MimeType string
	// FirstNALU is the type of the first NAL unit received (H.264: 24
	// STAP-A with the parameter sets, 5 IDR, 7 SPS; H.265: 48 AP with the
	// parameter sets, 32 VPS: a start at a key frame).
	FirstNALU int
	// Timestamps are the RTP timestamps of the frames, in order.
	Timestamps []uint32
}

// Dial offers to receive the stream at endpoint (…/whep/STREAM) and waits
// for the answer. sign, when not nil, signs the request (SigV4) or adds a
// cookie. The connection then completes in the background: Connected.
func Dial(ctx context.Context, endpoint string, hc *http.Client, sign func(*http.Request) error, opts ...DialOption) (*Client, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	m := &webrtc.MediaEngine{}
	if err := registerH264(m); err != nil {
		return nil, err
	}
	if o.h265 {
		if err := registerH265(m); err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	c := &Client{pc: pc, http: hc, sign: sign, done: make(chan struct{}), connected: make(chan struct{}), opts: o}
	c.stats.FirstNALU = -1
	ok := false
	defer func() {
		if !ok {
			_ = pc.Close()
		}
	}()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return nil, err
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.mu.Lock()
		first := !c.reading
		c.reading = true
		c.mu.Unlock()
		if first {
			c.read(t)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			c.connOnce.Do(func() { close(c.connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader([]byte(pc.LocalDescription().SDP)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if sign != nil {
		if err := sign(req); err != nil {
			return nil, err
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, &HTTPError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(answer))}
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("the answer has no Location: %w", err)
	}
	c.location = loc.String()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return nil, fmt.Errorf("the server's answer: %w", err)
	}
	ok = true
	return c, nil
}

const maxAnswer = 64 << 10

// HTTPError is a WHEP request the server refused.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// Location is the session's URL.
func (c *Client) Location() string { return c.location }

// Connected is closed once the PeerConnection is connected.
func (c *Client) Connected() <-chan struct{} { return c.connected }

// Stats returns what the client received so far.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Timestamps = append([]uint32(nil), s.Timestamps...)
	return s
}

// AccessUnits returns the access units received so far (WithAccessUnits),
// each as an Annex-B byte stream.
func (c *Client) AccessUnits() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.aus...)
}

func (c *Client) read(t *webrtc.TrackRemote) {
	defer close(c.done)
	h265 := strings.EqualFold(t.Codec().MimeType, webrtc.MimeTypeH265)
	c.mu.Lock()
	c.stats.MimeType = t.Codec().MimeType
	if h265 {
		c.depack = &codecs.H265Depacketizer{}
	} else {
		c.depack = &codecs.H264Packet{}
	}
	c.mu.Unlock()
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.stats.Packets > 0 {
			c.stats.Lost += int(p.SequenceNumber - c.lastSeq - 1)
		}
		c.lastSeq = p.SequenceNumber
		if c.stats.FirstNALU < 0 && len(p.Payload) > 0 {
			if h265 {
				c.stats.FirstNALU = int(p.Payload[0]>>1) & 0x3f
			} else {
				c.stats.FirstNALU = int(p.Payload[0] & 0x1f)
			}
		}
		if c.opts.keepAUs {
			// A packet that does not depacketize (lost fragments) leaves
			// its access unit short: the comparison with the source fails.
			if b, err := c.depack.Unmarshal(p.Payload); err == nil {
				c.partial = append(c.partial, b...)
			}
			if p.Marker {
				c.aus = append(c.aus, c.partial)
				c.partial = nil
			}
		}
		c.stats.Packets++
		c.stats.Bytes += len(p.Payload)
		if p.Marker {
			c.stats.Frames++
			c.stats.Timestamps = append(c.stats.Timestamps, p.Timestamp)
		}
		c.mu.Unlock()
	}
}

// Close hangs up (WHEP's DELETE) and closes the PeerConnection. It
// returns the DELETE's failure, if any.
func (c *Client) Close(ctx context.Context) error {
	var derr error
	if c.location != "" {
		derr = c.Delete(ctx)
	}
	err := c.pc.Close()
	c.mu.Lock()
	reading := c.reading
	c.mu.Unlock()
	if reading {
		<-c.done
	}
	return errors.Join(derr, err)
}

// Delete sends WHEP's DELETE for the session.
func (c *Client) Delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.location, nil)
	if err != nil {
		return err
	}
	if c.sign != nil {
		if err := c.sign(req); err != nil {
			return err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(msg))}
	}
	return nil
}
