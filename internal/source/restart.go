package source

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// backoff is the wait between restarts: First, doubling up to Max.
type backoff struct {
	First, Max time.Duration
}

// restartLoop calls run until ctx ends or final says a result ends it,
// waiting between runs with back-off (back to the first wait after a run
// of 30 s) and continuing the stream's timestamps across runs.
func restartLoop(ctx context.Context, now func() time.Time, cs *continuingSink, b backoff, run func() error,
	final func(err error, ran time.Duration) (bool, error), restarting func(err error, delay time.Duration)) error {
	delay := b.First
	for {
		started := now()
		err := run()
		if ctx.Err() != nil {
			return nil
		}
		ran := now().Sub(started)
		if done, result := final(err, ran); done {
			return result
		}
		if ran > rapidFailure {
			delay = b.First // it ran a good while: start over fresh
		}
		restarting(err, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		delay = min(delay*2, b.Max)
		cs.nextRun()
	}
}

// sinkError is an error of the sink a source feeds: it ends the source,
// whatever the source's restart rules say.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// continuingSink keeps one stream going across restarts of a program: the
// tracks are announced again only when they change, and each run's
// timestamps continue after the previous run's.
type continuingSink struct {
	inner   Sink
	log     *slog.Logger
	tracks  []media.Track
	offset  time.Duration // added to this run's timestamps
	first   bool          // the next frame is this run's first
	base    time.Duration // this run's first timestamp
	lastEnd time.Duration // the latest timestamp sent, after offset
}

func (c *continuingSink) Start(tracks []media.Track) error {
	if c.tracks != nil && sameTracks(c.tracks, tracks) {
		return nil
	}
	if c.tracks != nil && c.log != nil {
		c.log.Info("the program restarted with other tracks or parameter sets: announcing them again")
	}
	if c.tracks == nil {
		c.first = true
	}
	c.tracks = tracks
	if err := c.inner.Start(tracks); err != nil {
		return &sinkError{fmt.Errorf("starting the stream: %w", err)}
	}
	return nil
}

func sameTracks(a, b []media.Track) bool {
	return slices.EqualFunc(a, b, func(x, y media.Track) bool {
		return x.Number == y.Number && x.CodecID == y.CodecID && x.Width == y.Width && x.Height == y.Height && x.Kind == y.Kind &&
			x.SampleRate == y.SampleRate && x.Channels == y.Channels && bytes.Equal(x.CodecPrivate, y.CodecPrivate)
	})
}

// nextRun prepares the timestamps of a new run of the program.
func (c *continuingSink) nextRun() {
	c.first = true
	c.offset = c.lastEnd + 100*time.Millisecond
}

func (c *continuingSink) Frame(f media.Frame) error {
	if c.first {
		c.base, c.first = min(f.DTS, f.PTS), false
	}
	f.PTS += c.offset - c.base
	f.DTS += c.offset - c.base
	c.lastEnd = max(c.lastEnd, f.PTS, f.DTS)
	if err := c.inner.Frame(f); err != nil {
		return &sinkError{err}
	}
	return nil
}

var _ DropSink = (*continuingSink)(nil)

// Drop passes a run's losses on.
func (c *continuingSink) Drop(track uint8, frames int, why Loss) {
	if d, ok := c.inner.(DropSink); ok {
		d.Drop(track, frames, why)
	}
}
