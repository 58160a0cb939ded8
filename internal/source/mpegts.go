package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// MPEGTS reads an MPEG transport stream with H.264 or H.265 video and
// optionally AAC audio, or AAC audio alone.
type MPEGTS struct {
	R      io.Reader
	Pace   bool
	Now    func() time.Time
	Logger *slog.Logger
	sleep  func(context.Context, time.Duration) error // the pacer's, in tests
}

// maxEarlyAudio bounds the audio kept while waiting for the first video
// key frame: 5 s of 48 kHz AAC, far more than any muxer sends ahead.
const maxEarlyAudio = 256

func ticks90k(t int64) time.Duration { return time.Duration(t) * time.Second / 90000 }

// Run implements Source.
func (m *MPEGTS) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(m.Now, m.Logger)
	var (
		pids   = map[uint16]uint8{} // PID → track number, once known
		losses int
		joins  int
	)
	joined := newTSJoins(m.R, func(uint16) { joins++ }, func(pid uint16) {
		losses++
		if losses <= 10 || losses%1000 == 0 {
			log.Warn("MPEG-TS packets are missing (the continuity counter skips): the frame they belong to is lost", "pid", pid, "losses", losses)
		}
		if d, ok := sink.(DropSink); ok && pids[pid] != 0 {
			d.Drop(pids[pid], 1, LossDamaged)
		}
	})
	r := &mpegts.Reader{R: joined}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("reading MPEG-TS: %w", err)
	}
	var (
		video     *mpegts.Track
		vcodec    codec.Codec
		audio     *mpegts.Track
		audioConf []byte
		rate      int
		channels  int
	)
	for _, t := range r.Tracks() {
		switch c := t.Codec.(type) {
		case *tscodecs.H264:
			if video == nil {
				video, vcodec = t, codec.H264
			}
		case *tscodecs.H265:
			if video == nil {
				video, vcodec = t, codec.H265
			}
		case *tscodecs.MPEG4Audio:
			if audio == nil {
				b, err := c.Config.Marshal()
				if err != nil || c.Config.SampleRate <= 0 {
					log.Warn("dropping an AAC track whose configuration cannot be read", "err", err)
					continue
				}
				audio, audioConf, rate, channels = t, b, c.Config.SampleRate, aacChannels(c.Config.ChannelConfig)
			}
		default:
			log.Warn("dropping an MPEG-TS track Kinesis Video Streams players cannot use", "pid", t.PID)
		}
	}
	if video == nil && audio == nil {
		return errors.New("the MPEG-TS input has no H.264, H.265 or AAC track")
	}
	audioTrack := uint8(2)
	if video == nil {
		audioTrack = 1
	} else {
		pids[video.PID] = 1
	}
	if audio != nil {
		pids[audio.PID] = audioTrack
	}
	params := &codec.Params{Codec: vcodec}
	pace := &pacer{enabled: m.Pace, now: now, log: log, sleep: m.sleep}
	// One decoder for every track: the 33-bit clock wraps for all of them.
	td := mpegts.TimeDecoder{}
	started, sawKey := false, false
	var (
		buf                   []byte
		beforeKey, audioEarly int // frames before the first video key frame, not handed on
		// early holds the audio that comes before the first video key
		// frame (a muxer sends audio ahead of video; a stream joined in
		// the middle of a GOP): it is handed on with that key frame, and
		// the producer keeps what belongs with it by time.
		early        []media.Frame
		decodeErrors int
	)
	r.OnDecodeError(func(err error) {
		// Data the demuxer could not make into frames is lost: say so,
		// but do not flood the log with a corrupt input.
		decodeErrors++
		if decodeErrors <= 10 || decodeErrors%1000 == 0 {
			log.Warn("MPEG-TS: skipping data that cannot be read", "err", err, "errors", decodeErrors)
		}
	})
	if video == nil {
		// Audio alone: no parameter sets or key frame to wait for.
		if err := sink.Start([]media.Track{{Number: 1, Kind: media.KindAudio, CodecID: media.CodecAAC,
			CodecPrivate: audioConf, SampleRate: float64(rate), Channels: channels}}); err != nil {
			return err
		}
		started, sawKey = true, true
	}
	onVideo := func(pts, dts int64, au [][]byte) error {
		pts, dts = td.Decode(pts), td.Decode(dts)
		if _, err := params.Update(au); err != nil {
			log.Warn("ignoring a parameter set kvsgo cannot read", "err", err)
		}
		if !started {
			if !params.Ready() {
				beforeKey++
				return nil
			}
			cpd, err := params.CodecPrivate()
			if err != nil {
				return err
			}
			info := params.Info()
			id := media.CodecH264
			if vcodec == codec.H265 {
				id = media.CodecH265
			}
			tracks := []media.Track{{Number: 1, Kind: media.KindVideo, CodecID: id, CodecPrivate: cpd, Name: "kinesis_video",
				Width: info.Width, Height: info.Height}}
			if audio != nil {
				tracks = append(tracks, media.Track{Number: 2, Kind: media.KindAudio, CodecID: media.CodecAAC,
					CodecPrivate: audioConf, SampleRate: float64(rate), Channels: channels})
			}
			if err := sink.Start(tracks); err != nil {
				return err
			}
			started = true
		}
		key := vcodec.IsKey(au)
		if !sawKey && !key {
			beforeKey++
			return nil
		}
		if !sawKey {
			sawKey = true
			reportDrop(sink, log, 1, beforeKey, LossBeforeKeyFrame, "the video before the first key frame (a decoder needs one to start)")
			if audio != nil {
				reportDrop(sink, log, 2, audioEarly, LossBeforeKeyFrame, "the audio long before the first video key frame: a stream starts at one")
			}
			for _, f := range early {
				if err := sink.Frame(f); err != nil {
					return err
				}
			}
			early = nil
		}
		if err := pace.wait(ctx, ticks90k(dts)); err != nil {
			return err
		}
		buf = vcodec.AppendLengthPrefixed(buf[:0], au)
		return sink.Frame(media.Frame{Track: 1, PTS: ticks90k(pts), DTS: ticks90k(dts), Key: key, Data: buf})
	}
	switch {
	case video == nil:
	case vcodec == codec.H264:
		r.OnDataH264(video, onVideo)
	default:
		r.OnDataH265(video, onVideo)
	}
	if audio != nil {
		r.OnDataMPEG4Audio(audio, func(pts int64, aus [][]byte) error {
			pts = td.Decode(pts)
			for i, au := range aus {
				ts := ticks90k(pts) + time.Duration(i)*1024*time.Second/time.Duration(rate)
				if !sawKey {
					if len(early) == maxEarlyAudio {
						early = append(early[:0], early[1:]...)
						audioEarly++
					}
					early = append(early, media.Frame{Track: audioTrack, PTS: ts, DTS: ts, Key: true, Data: append([]byte(nil), au...)})
					continue
				}
				if video == nil { // audio alone sets the pace
					if err := pace.wait(ctx, ts); err != nil {
						return err
					}
				}
				if err := sink.Frame(media.Frame{Track: audioTrack, PTS: ts, DTS: ts, Key: true, Data: au}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if !started {
					return errors.New("the MPEG-TS input ended before the video's parameter sets (SPS/PPS)")
				}
				if !sawKey {
					reportDrop(sink, log, 1, beforeKey, LossBeforeKeyFrame, "the video: the input ended before a key frame")
					if audio != nil {
						reportDrop(sink, log, 2, audioEarly+len(early), LossBeforeKeyFrame, "the audio: the input ended before a video key frame")
					}
				}
				return nil
			}
			return fmt.Errorf("reading MPEG-TS: %w", err)
		}
	}
}

// aacChannels turns an AAC channel configuration into a channel count
// (ISO/IEC 14496-3 table 1.19); 0 means a program config element decides,
// which players treat as stereo.
func aacChannels(config uint8) int {
	switch {
	case config >= 1 && config <= 6:
		return int(config)
	case config == 7:
		return 8
	}
	return 2
}
