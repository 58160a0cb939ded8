package live

import (
	"fmt"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/mkv"
)

// MTU bounds an RTP packet's payload: small enough for any path with
// SRTP's and the tunnels' overhead.
const MTU = 1200

// Publisher is one PutMedia session feeding a stream: the ingest hands it
// every Matroska event it parses (Event), and closes it when the session
// ends. Not safe for concurrent use: one ingest goroutine owns it.
type Publisher struct {
	st *Stream
	// startNS is the producer start timestamp of a session with relative
	// timecodes, added to every frame's timecode.
	startNS int64

	scale      int64 // ns per timecode unit
	video      uint64
	codec      codec.Codec // 0 when the video cannot be sent
	lengthSize int
	params     [][]byte // VPS (H.265), SPS and PPS from the codec private data
	lastTC     int64
	haveTC     bool

	payloader rtp.Payloader
	nalus     [][]byte
	closed    bool
}

// Publish starts feeding a stream. With relative timecodes, they count
// from startMS, the session's producer start timestamp (Unix ms).
func (h *Hub) Publish(name string, relative bool, startMS int64) *Publisher {
	if !relative {
		startMS = 0
	}
	st := h.stream(name)
	st.mu.Lock()
	st.producers++
	// A new session has a new header: its codec is unknown until then,
	// and its viewers start again at its first key frame.
	st.codec, st.reordered = ErrStarting, false
	for v := range st.viewers {
		v.waitKey = true
	}
	st.mu.Unlock()
	return &Publisher{st: st, startNS: startMS * 1e6, scale: mkv.DefaultTimecodeScale}
}

// Close ends the session's feed. Viewers stay: the stream's next producer
// session continues them from its first key frame.
func (p *Publisher) Close() {
	if p == nil || p.closed {
		return
	}
	p.closed = true
	p.st.mu.Lock()
	p.st.producers--
	p.st.mu.Unlock()
}

// Event takes one event of the session's Matroska stream: the header (the
// codec private data) and each frame. Invalid frames are skipped: the
// ingest, not the live view, judges the producer's data. A nil Publisher
// (an ingest without a live view, as in tests) takes nothing.
func (p *Publisher) Event(ev *mkv.Event) {
	if p == nil {
		return
	}
	switch ev.Type {
	case mkv.EventHeader:
		p.header(ev.Header)
	case mkv.EventBlock:
		if p.codec != 0 && ev.Block.Track == p.video {
			p.frame(ev)
		}
	}
}

// WantsFrames reports whether the next frame has a viewer to go to. The
// ingest skips block payloads unread otherwise, so a stream nobody watches
// costs nothing here.
func (p *Publisher) WantsFrames() bool {
	return p != nil && p.codec != 0 && p.st.hasViewers()
}

func (p *Publisher) header(h *mkv.Header) {
	p.scale = int64(h.TimecodeScale)
	if p.scale == 0 {
		p.scale = mkv.DefaultTimecodeScale
	}
	p.codec, p.params, p.haveTC = 0, nil, false
	status := ErrNoVideo
	for _, t := range h.Tracks {
		if t.Type != mkv.TrackTypeVideo {
			continue
		}
		p.video = t.Number
		var (
			c   codec.Codec
			cfg codec.DecoderConfig
			err error
		)
		switch t.CodecID {
		case "V_MPEG4/ISO/AVC":
			c = codec.H264
			cfg, err = codec.ParseAVCC(t.CodecPrivate)
			p.payloader = &codecs.H264Payloader{}
		case "V_MPEGH/ISO/HEVC":
			c = codec.H265
			cfg, err = codec.ParseHVCC(t.CodecPrivate)
			// Aggregation packs the parameter sets into one AP before
			// the key frame's first slice.
			p.payloader = &codecs.H265Payloader{}
		default:
			status = fmt.Errorf("%w (it is %s)", ErrCodec, t.CodecID)
		}
		if c == 0 {
			break
		}
		if err != nil {
			status = fmt.Errorf("its %s codec private data is unreadable: %w", c, err)
			break
		}
		p.codec, p.lengthSize, p.params, status = c, cfg.LengthSize, cfg.NALUs(), nil
		break
	}
	p.st.mu.Lock()
	changed := p.codec != 0 && p.st.kind != 0 && p.codec != p.st.kind
	p.st.codec = status
	if p.codec != 0 {
		p.st.kind = p.codec
	}
	p.st.mu.Unlock()
	switch {
	case status != nil:
		p.st.endViewers(status)
	case changed:
		// A viewer's session negotiated the old codec.
		p.st.endViewers(ErrCodecChanged)
	}
}

func (p *Publisher) frame(ev *mkv.Event) {
	// A frame with an earlier timecode than the one before it was sent
	// ahead of frames it is shown after: a B-frame stream.
	if p.haveTC && ev.Timecode < p.lastTC {
		p.codec = 0
		p.st.mu.Lock()
		p.st.reordered = true
		p.st.mu.Unlock()
		p.st.endViewers(ErrReordered)
		return
	}
	p.lastTC, p.haveTC = ev.Timecode, true
	if !p.st.hasViewers() {
		return // nobody watches: the frame costs nothing
	}
	ts := RTPTimestamp(p.startNS + ev.Timecode*p.scale)
	key := ev.Key
	var payloads [][]byte
	for _, data := range ev.Block.Frames {
		nalus, err := codec.SplitLengthPrefixed(p.nalus[:0], data, p.lengthSize)
		p.nalus = nalus
		if err != nil {
			return
		}
		if key {
			// The parameter sets go before every key frame (IDR, or for
			// H.265 any IRAP: IDR, CRA, BLA), so that a viewer can start
			// there; the payloader packs them into one STAP-A (H.264) or
			// AP (H.265) with the frame's first NAL unit.
			for _, n := range p.params {
				payloads = append(payloads, p.payloader.Payload(MTU, n)...)
			}
		}
		for _, n := range nalus {
			payloads = append(payloads, p.payloader.Payload(MTU, n)...)
		}
	}
	if len(payloads) == 0 {
		return
	}
	f := &Frame{Key: key, Packets: make([]*rtp.Packet, len(payloads))}
	for i, pl := range payloads {
		f.Packets[i] = &rtp.Packet{Header: rtp.Header{Version: 2, Timestamp: ts, Marker: i == len(payloads)-1}, Payload: pl}
	}
	p.st.send(f)
}

// RTPTimestamp is a frame's RTP timestamp: its producer timestamp (Unix
// ns) on the 90 kHz video clock, modulo 2^32. Every viewer's RTP clock is
// thus the producer's clock, so a player can tell the wall-clock time of
// the frame it shows (requestVideoFrameCallback's rtpTimestamp) and how far
// behind live it is.
func RTPTimestamp(producerNS int64) uint32 {
	return uint32(producerNS / 1000 * 9 / 100)
}
