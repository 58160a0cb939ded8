package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// RTSP reads an IP camera's H.264 or H.265 over RTSP and passes it through
// without transcoding. Timestamps come from RTP; the camera is reconnected
// with back-off when it drops, and the stream's timestamps go on.
type RTSP struct {
	URL string
	// Transport is "tcp" (default: it crosses NAT and firewalls) or "udp".
	Transport string
	Now       func() time.Time
	Logger    *slog.Logger
}

// Run implements Source.
func (r *RTSP) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(r.Now, r.Logger)
	u, err := base.ParseURL(r.URL)
	if err != nil {
		return fmt.Errorf("RTSP URL %q: %w", r.URL, err)
	}
	cs := &continuingSink{inner: sink, log: log}
	return restartLoop(ctx, now, cs, backoff{First: time.Second, Max: 30 * time.Second},
		func() error { return r.runOnce(ctx, u, cs, log) },
		func(err error, _ time.Duration) (bool, error) {
			var fatal *fatalSourceError
			if errors.As(err, &fatal) {
				return true, fatal.err
			}
			if se := (*sinkError)(nil); errors.As(err, &se) {
				return true, se.err
			}
			return false, nil
		},
		func(err error, delay time.Duration) {
			log.Warn("the camera dropped; reconnecting", "url", redact(u), "reason", err, "in", delay)
		})
}

// fatalSourceError ends a source instead of reconnecting.
type fatalSourceError struct{ err error }

func (e *fatalSourceError) Error() string { return e.err.Error() }

func (r *RTSP) runOnce(ctx context.Context, u *base.URL, sink Sink, log *slog.Logger) error {
	proto := gortsplib.ProtocolTCP
	if r.Transport == "udp" {
		proto = gortsplib.ProtocolUDP
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("DESCRIBE: %w", err)
	}
	var (
		h264f *format.H264
		h265f *format.H265
	)
	var v videoPath
	if medi := desc.FindFormat(&h265f); medi != nil {
		dec, err := h265f.CreateDecoder()
		if err != nil {
			return err
		}
		v = videoPath{codec: codec.H265, medi: medi, forma: h265f, decode: dec.Decode, initial: [][]byte{h265f.VPS, h265f.SPS, h265f.PPS}}
		ex := &h265.DTSExtractor{}
		ex.Initialize()
		v.dts = ex.Extract
	}
	if medi := desc.FindFormat(&h264f); medi != nil && v.medi == nil {
		dec, err := h264f.CreateDecoder()
		if err != nil {
			return err
		}
		v = videoPath{codec: codec.H264, medi: medi, forma: h264f, decode: dec.Decode, initial: [][]byte{h264f.SPS, h264f.PPS}}
		ex := &h264.DTSExtractor{}
		ex.Initialize()
		v.dts = ex.Extract
	}
	if v.medi == nil {
		return &fatalSourceError{fmt.Errorf("the camera at %s offers no H.264 or H.265 video", redact(u))}
	}
	if _, err := c.Setup(desc.BaseURL, v.medi, 0, 0); err != nil {
		return fmt.Errorf("SETUP: %w", err)
	}
	v.params, v.log = &codec.Params{Codec: v.codec}, log
	for _, n := range v.initial {
		if len(n) > 0 {
			_, _ = v.params.Update([][]byte{n})
		}
	}
	var (
		mu      sync.Mutex
		sinkErr error
	)
	c.OnPacketRTP(v.medi, v.forma, func(pkt *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if sinkErr != nil {
			return
		}
		// gortsplib times nothing before the camera's first key frame.
		pts, timed := c.PacketPTS(v.medi, pkt)
		if err := v.packet(pkt, pts, timed, sink); err != nil {
			sinkErr = err
			c.Close()
		}
	})
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("PLAY: %w", err)
	}
	log.Info("receiving", "url", redact(u), "codec", v.codec.String(), "transport", proto.String())
	err = c.Wait()
	mu.Lock()
	defer mu.Unlock()
	if sinkErr != nil {
		return &fatalSourceError{sinkErr}
	}
	return err
}

// videoPath turns RTP packets of one video format into frames.
type videoPath struct {
	codec   codec.Codec
	medi    *description.Media
	forma   format.Format
	decode  func(*rtp.Packet) ([][]byte, error)
	dts     func([][]byte, int64) (int64, error)
	initial [][]byte
	params  *codec.Params
	log     *slog.Logger
	started bool
	keyed   bool
	skipped int // pictures before the first key frame of this session
	buf     []byte
}

func (v *videoPath) packet(pkt *rtp.Packet, pts int64, timed bool, sink Sink) error {
	au, err := v.decode(pkt)
	if err != nil {
		return nil // more packets needed, or a loss: the decoder resyncs
	}
	if !timed {
		v.skipped++
		return nil
	}
	if _, err := v.params.Update(au); err != nil {
		v.log.Warn("ignoring a parameter set kvsgo cannot read", "err", err)
	}
	if !v.started {
		if !v.params.Ready() {
			v.skipped++
			return nil
		}
		cpd, err := v.params.CodecPrivate()
		if err != nil {
			return err
		}
		info := v.params.Info()
		id := media.CodecH264
		if v.codec == codec.H265 {
			id = media.CodecH265
		}
		if err := sink.Start([]media.Track{{Number: 1, Kind: media.KindVideo, CodecID: id, CodecPrivate: cpd,
			Name: "kinesis_video", Width: info.Width, Height: info.Height}}); err != nil {
			return err
		}
		v.started = true
	}
	key := v.codec.IsKey(au)
	if !v.keyed && !key {
		v.skipped++
		return nil
	}
	if !v.keyed {
		v.keyed = true
		reportDrop(sink, v.log, 1, v.skipped, LossBeforeKeyFrame, "the camera's pictures before its first key frame since connecting (a decoder needs one to start)")
	}
	dts, err := v.dts(au, pts)
	if err != nil {
		dts = pts
	}
	// Parameter sets travel in the SDP; put them in-band at key frames too,
	// so that any fragment can be decoded on its own.
	nalus := au
	if key && !hasParamSets(v.codec, au) {
		nalus = append(append([][]byte{}, v.initialSets()...), au...)
	}
	v.buf = v.codec.AppendLengthPrefixed(v.buf[:0], nalus)
	toDur := func(t int64) time.Duration { return time.Duration(t) * time.Second / 90000 }
	return sink.Frame(media.Frame{Track: 1, PTS: toDur(pts), DTS: toDur(dts), Key: key, Data: v.buf})
}

func (v *videoPath) initialSets() [][]byte {
	var out [][]byte
	for _, n := range v.initial {
		if len(n) > 0 {
			out = append(out, n)
		}
	}
	return out
}

func hasParamSets(c codec.Codec, au [][]byte) bool {
	for _, n := range au {
		t := c.NALUType(n)
		if (c == codec.H264 && t == 7) || (c == codec.H265 && t == 33) {
			return true
		}
	}
	return false
}

// redact drops the credentials from a camera URL before it is logged.
func redact(u *base.URL) string {
	return u.CloneWithoutCredentials().String()
}
