package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// Matroska reads Matroska or WebM: a file, `ffmpeg … -f matroska -`, or
// `gst-launch-1.0 … ! matroskamux streamable=true ! fdsink`. H.264, H.265
// and AAC tracks are kept, others dropped.
type Matroska struct {
	R      io.Reader
	Pace   bool
	Now    func() time.Time
	Logger *slog.Logger
}

// Run implements Source.
func (m *Matroska) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(m.Now, m.Logger)
	d := mkv.NewDemuxer(m.R)
	pace := &pacer{enabled: m.Pace, now: now}
	var (
		started bool
		scale   time.Duration
		keep    map[uint64]uint8 // Matroska track → kvsgo track number
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			if !started {
				return errors.New("the Matroska input ended before its tracks")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading Matroska: %w", err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			if started {
				continue // a concatenated stream (GetMedia output): same tracks
			}
			scale = time.Duration(ev.Header.TimecodeScale)
			if scale == 0 {
				scale = time.Millisecond
			}
			tracks, k := convertTracks(ev.Header.Tracks, log)
			if len(tracks) == 0 {
				return errors.New("the Matroska input has no H.264, H.265 or AAC track")
			}
			keep = k
			if err := sink.Start(tracks); err != nil {
				return err
			}
			started = true
		case mkv.EventBlock:
			n, ok := keep[ev.Block.Track]
			if !ok {
				continue
			}
			ts := time.Duration(ev.Timecode) * scale
			if err := pace.wait(ctx, ts); err != nil {
				return err
			}
			for _, data := range ev.Block.Frames {
				if err := sink.Frame(media.Frame{Track: n, PTS: ts, DTS: ts, Key: ev.Key, Data: data}); err != nil {
					return err
				}
			}
		}
	}
}

func convertTracks(in []mkv.Track, log *slog.Logger) ([]media.Track, map[uint64]uint8) {
	var out []media.Track
	keep := map[uint64]uint8{}
	hasVideo, hasAudio := false, false
	for _, t := range in {
		mt := media.Track{Number: uint8(len(out) + 1), CodecID: t.CodecID, CodecPrivate: t.CodecPrivate, Name: t.Name}
		switch {
		case (t.CodecID == media.CodecH264 || t.CodecID == media.CodecH265) && !hasVideo:
			mt.Kind, mt.Width, mt.Height = media.KindVideo, int(t.Width), int(t.Height)
			if mt.Name == "" {
				mt.Name = "kinesis_video"
			}
			hasVideo = true
		case t.CodecID == media.CodecAAC && !hasAudio:
			mt.Kind, mt.SampleRate, mt.Channels = media.KindAudio, t.SamplingFrequency, int(t.Channels)
			hasAudio = true
		default:
			log.Warn("dropping a track Kinesis Video Streams players cannot use", "codec", t.CodecID, "track", t.Number)
			continue
		}
		keep[t.Number] = mt.Number
		out = append(out, mt)
	}
	// Video first: track 1 is what the service's players expect.
	if len(out) == 2 && out[0].Kind == media.KindAudio {
		out[0], out[1] = out[1], out[0]
		out[0].Number, out[1].Number = 1, 2
		for k, v := range keep {
			keep[k] = 3 - v
		}
	}
	return out, keep
}
