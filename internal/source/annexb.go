package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// AnnexB reads a raw H.264 or H.265 byte stream. Frames are timed by FPS,
// else by the SPS's timing information, else by their arrival.
type AnnexB struct {
	R     io.Reader
	Codec codec.Codec
	// FPS, when set, times frames; otherwise the SPS's, else arrival time.
	FPS float64
	// Arrival times frames by when they arrive, ignoring the SPS's frame
	// rate (cameras whose output carries no timing, like rpicam-vid).
	Arrival bool
	// Pace sends frames in real time (for files); a live pipe paces itself.
	Pace   bool
	Now    func() time.Time
	Logger *slog.Logger
	sleep  func(context.Context, time.Duration) error // the pacer's, in tests
}

// Run implements Source.
func (a *AnnexB) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(a.Now, a.Logger)
	r := codec.NewAnnexBReader(a.R, a.Codec)
	params := &codec.Params{Codec: a.Codec}
	deriver := &codec.PTSDeriver{Codec: a.Codec}
	pace := &pacer{enabled: a.Pace, now: now, log: log, sleep: a.sleep}
	var (
		started   bool
		frame     time.Duration // one frame's duration; 0: use arrival time
		rate      float64       // frames per second, when known
		arrival0  time.Time
		n         int
		waiting   int
		buf       []byte
		lastDTS   time.Duration
		sentFirst bool
		skipped   int // access units before the first key frame
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		au, err := r.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			if !started {
				return fmt.Errorf("the input ended before any %s picture with its parameter sets (SPS/PPS) arrived: is it %s Annex-B?", a.Codec, a.Codec)
			}
			if !sentFirst {
				reportDrop(sink, log, 1, skipped, LossBeforeKeyFrame, "the pictures: the input ended before a key frame")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", a.Codec, err)
		}
		if changed, err := params.Update(au); err != nil {
			log.Warn("ignoring a parameter set kvsgo cannot read", "err", err)
		} else if changed && started {
			log.Warn("the stream's parameter sets changed mid-stream; players may need a restart of the stream to follow", "info", params.Info().String())
		}
		if !started {
			if !params.Ready() {
				waiting++
				skipped++
				if waiting == 100 {
					log.Warn("no parameter sets (SPS/PPS) after 100 access units; encoders must repeat them (rpicam-vid --inline, x264 repeat-headers)")
				}
				continue
			}
			cpd, err := params.CodecPrivate()
			if err != nil {
				return err
			}
			info := params.Info()
			id := media.CodecH264
			if a.Codec == codec.H265 {
				id = media.CodecH265
			}
			if err := sink.Start([]media.Track{{Number: 1, Kind: media.KindVideo, CodecID: id, CodecPrivate: cpd,
				Name: "kinesis_video", Width: info.Width, Height: info.Height}}); err != nil {
				return err
			}
			fps := a.FPS
			if fps == 0 && !a.Arrival {
				fps = info.FPS
			}
			if fps > 0 && fps < 1000 {
				rate, frame = fps, time.Duration(float64(time.Second)/fps)
			}
			log.Info("video", "stream", info.String(), "frame_duration", frame)
			started, arrival0 = true, now()
		}
		if !sentFirst && !a.Codec.IsKey(au) {
			skipped++ // a decoder needs a key frame first
			continue
		}
		if !sentFirst {
			sentFirst = true
			reportDrop(sink, log, 1, skipped, LossBeforeKeyFrame, "the pictures before the first key frame (a decoder needs one to start)")
		}
		var dts time.Duration
		if frame > 0 {
			// From the frame count, not by adding up a rounded duration.
			dts = time.Duration(math.Round(float64(n) * float64(time.Second) / rate))
		} else {
			dts = now().Sub(arrival0)
			if dts <= lastDTS && n > 0 {
				dts = lastDTS + time.Millisecond
			}
		}
		lastDTS = dts
		step := frame
		if step == 0 {
			step = 33 * time.Millisecond
		}
		pts, err := deriver.PTS(au, dts, step, params)
		if err != nil {
			pts = dts
		}
		if err := pace.wait(ctx, dts); err != nil {
			return err
		}
		buf = a.Codec.AppendLengthPrefixed(buf[:0], au)
		if err := sink.Frame(media.Frame{Track: 1, PTS: pts, DTS: dts, Key: a.Codec.IsKey(au), Data: buf}); err != nil {
			return err
		}
		n++
	}
}
