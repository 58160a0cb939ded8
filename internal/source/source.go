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
// order. Start comes again when the tracks or their codec private data
// change (a new Matroska header mid-stream, a supervised program restarted
// with other parameter sets); frames after it belong to the new tracks.
type Sink interface {
	Start(tracks []media.Track) error
	Frame(f media.Frame) error
}

// DropSink is a Sink that also counts the frames a source could not pass
// on, and why. The source logs each loss either way.
type DropSink interface {
	Sink
	Drop(track uint8, frames int, why Loss)
}

// Loss says why a source could not pass frames on.
type Loss int

const (
	// LossBeforeKeyFrame: pictures before the first key frame of the input,
	// or of a camera's connection, and the audio before it: a decoder needs
	// a key frame to start, and a stream starts at one.
	LossBeforeKeyFrame Loss = iota + 1
	// LossUndecodable: pictures that need frames the input does not give
	// (those an MP4 shows between an edit's start and the next key frame
	// need the pre-roll the edit hides).
	LossUndecodable
	// LossDamaged: frames damaged or missing in the input (MPEG-TS packets
	// lost on the way).
	LossDamaged
)

// reportDrop logs frames a source loses and tells the sink, if it counts
// them.
func reportDrop(sink Sink, log *slog.Logger, track uint8, frames int, why Loss, what string, args ...any) {
	if frames <= 0 {
		return
	}
	log.Warn("not sending "+what, append([]any{"track", track, "frames", frames}, args...)...)
	if d, ok := sink.(DropSink); ok {
		d.Drop(track, frames, why)
	}
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
