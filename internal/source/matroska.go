package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// Matroska reads Matroska or WebM: a file, `ffmpeg … -f matroska -`, or
// `gst-launch-1.0 … ! matroskamux streamable=true ! fdsink`. H.264, H.265
// and AAC tracks are kept, others dropped; audio alone is fine. Laced
// blocks (mkvmerge puts several AAC frames in one) give each frame its own
// time. A new header in the middle (`cat a.mkv b.mkv`) whose tracks or
// codec private data differ starts the sink again with the new tracks.
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
	pace := &pacer{enabled: m.Pace, now: now, log: log}
	var (
		started bool
		scale   time.Duration
		tracks  []media.Track
		keep    map[uint64]kept // Matroska track → kvsgo track
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
			scale = time.Duration(ev.Header.TimecodeScale)
			if scale == 0 {
				scale = time.Millisecond
			}
			next, k := convertTracks(ev.Header.Tracks, log)
			if len(next) == 0 {
				return errors.New("the Matroska input has no H.264, H.265 or AAC track")
			}
			keep = k
			if started && slices.EqualFunc(tracks, next, sameMediaTrack) {
				continue // a concatenated stream (GetMedia output): same tracks
			}
			if started {
				log.Info("a new Matroska header with different tracks: the stream goes on with them")
			}
			if err := sink.Start(next); err != nil {
				return err
			}
			tracks, started = next, true
		case mkv.EventBlock:
			k, ok := keep[ev.Block.Track]
			if !ok {
				continue
			}
			ts := time.Duration(ev.Timecode) * scale
			if err := pace.wait(ctx, ts); err != nil {
				return err
			}
			if len(ev.Block.Frames) > 1 && k.frame == 0 {
				log.Warn("laced frames without a known duration share their block's time", "track", ev.Block.Track)
			}
			for i, data := range ev.Block.Frames {
				at := ts + time.Duration(i)*k.frame
				if err := sink.Frame(media.Frame{Track: k.number, PTS: at, DTS: at, Key: ev.Key, Data: data}); err != nil {
					return err
				}
			}
		}
	}
}

// kept is a Matroska track that is passed on: its number for the sink and
// how far apart the frames of a laced block are.
type kept struct {
	number uint8
	frame  time.Duration
}

// sameMediaTrack reports whether a track is unchanged.
func sameMediaTrack(a, b media.Track) bool {
	return a.Number == b.Number && a.Kind == b.Kind && a.CodecID == b.CodecID && bytes.Equal(a.CodecPrivate, b.CodecPrivate) &&
		a.Width == b.Width && a.Height == b.Height && a.SampleRate == b.SampleRate && a.Channels == b.Channels
}

// frameDuration is the time between the frames of a laced block: the
// track's DefaultDuration, or for AAC 1024 samples at the sampling rate.
func frameDuration(t mkv.Track) time.Duration {
	switch {
	case t.DefaultDuration > 0:
		return time.Duration(t.DefaultDuration)
	case t.CodecID == media.CodecAAC && t.SamplingFrequency > 0:
		return time.Duration(1024 * float64(time.Second) / t.SamplingFrequency)
	}
	return 0
}

func convertTracks(in []mkv.Track, log *slog.Logger) ([]media.Track, map[uint64]kept) {
	var out []media.Track
	keep := map[uint64]kept{}
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
		keep[t.Number] = kept{number: mt.Number, frame: frameDuration(t)}
		out = append(out, mt)
	}
	// Video first: track 1 is what the service's players expect.
	if len(out) == 2 && out[0].Kind == media.KindAudio {
		out[0], out[1] = out[1], out[0]
		out[0].Number, out[1].Number = 1, 2
		for k, v := range keep {
			v.number = 3 - v.number
			keep[k] = v
		}
	}
	return out, keep
}
