// Package source turns what users have (a raw H.264/H.265 stream, a
// Matroska, MPEG-TS or MP4 file, stdin, the built-in test clip) into
// media frames. A source knows nothing of Kinesis Video Streams.
package source

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// Sink receives a source's output: its tracks, then frames in decoding
// order. Start may be called again when the tracks or their codec private
// data change (a new Matroska header mid-stream); frames after it belong
// to the new tracks.
type Sink interface {
	Start(tracks []media.Track) error
	Frame(f media.Frame) error
}

// Source produces frames until its input ends (nil) or fails.
type Source interface {
	Run(ctx context.Context, sink Sink) error
}

// ErrUnknownFormat is returned for input kvsgo cannot identify.
var ErrUnknownFormat = errors.New("unknown input format")

// defaults fills in the clock and logger a source was not given.
func defaults(now func() time.Time, log *slog.Logger) (func() time.Time, *slog.Logger) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return now, log
}

// pacer holds frames back to real time: a file is sent as a camera would
// deliver it.
type pacer struct {
	enabled bool
	now     func() time.Time
	start   time.Time
	first   time.Duration
	started bool
}

// wait blocks until the moment a frame with decoding time dts is due.
func (p *pacer) wait(ctx context.Context, dts time.Duration) error {
	if !p.enabled {
		return ctx.Err()
	}
	if !p.started {
		p.start, p.first, p.started = p.now(), dts, true
		return nil
	}
	d := p.start.Add(dts - p.first).Sub(p.now())
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
