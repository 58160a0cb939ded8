package source

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// pacer holds frames back to real time, so that a file is sent as a camera
// would deliver it, and watches the source's timestamps for
// discontinuities, whether it paces or not.
//
// A timestamp that jumps backwards by more than a few frames' worth (a
// second clip after the first: cat a.ts b.ts), or forwards by more than
// that and at least minForwardJump (a clip made with -output_ts_offset), is
// a discontinuity: the pacer does not sleep on it, it re-anchors to the
// wall clock so that the frame is due one frame after the previous one. The
// timestamps themselves go on unchanged: what to make of them is the
// sink's business, and the producer is the one that tells the user (once
// per jump, with what it did to the stream); the pacer notes it at debug
// level only.
type pacer struct {
	enabled bool
	now     func() time.Time
	log     *slog.Logger
	// sleep waits for d or until ctx ends; a timer when nil.
	sleep func(ctx context.Context, d time.Duration) error

	started bool
	start   time.Time     // when the anchor's timestamp was due
	first   time.Duration // the anchor's timestamp
	high    time.Duration // the highest timestamp since the anchor
	steps   [15]time.Duration
	nsteps  int // positive increments recorded in steps (a ring)
	events  int // discontinuities so far
}

const (
	// discontinuityFrames is how many typical steps a jump must exceed.
	discontinuityFrames = 5
	// minDiscontinuity keeps the B-frame reordering of presentation times
	// and the jitter of interleaved tracks from counting as jumps.
	minDiscontinuity = 200 * time.Millisecond
	// startDiscontinuity applies until the typical step is known.
	startDiscontinuity = 2 * time.Second
	// minForwardJump is the producer's DiscontinuityThreshold (1 s): a
	// shorter gap stays in the stream, so it is waited for, as a camera's
	// would be; not waiting would put the stream ahead of the clock.
	minForwardJump = time.Second
)

// wait blocks until the frame with timestamp ts is due.
func (p *pacer) wait(ctx context.Context, ts time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.now == nil {
		p.now = time.Now
	}
	if !p.started {
		p.started, p.start, p.first, p.high = true, p.now(), ts, ts
		return nil
	}
	limit := p.limit()
	switch d := ts - p.high; {
	case d > max(limit, minForwardJump) || d < -limit:
		p.discontinuity(ts, d)
	case d > 0:
		p.steps[p.nsteps%len(p.steps)] = d
		p.nsteps++
		p.high = ts
	}
	if !p.enabled {
		return nil
	}
	d := p.start.Add(ts - p.first).Sub(p.now())
	if d <= 0 {
		return nil
	}
	if d > max(limit, minForwardJump) {
		// Only a clock that went back gets here (time.Now's monotonic
		// reading does not): start over from now rather than wait for it.
		p.start, p.first = p.now(), ts
		return nil
	}
	if p.sleep != nil {
		return p.sleep(ctx, d)
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

// step is the typical increment of the timestamps: the median of the
// recent positive ones, which neither a dropped frame nor the small steps
// between interleaved audio and video move much.
func (p *pacer) step() time.Duration {
	n := min(p.nsteps, len(p.steps))
	if n == 0 {
		return 0
	}
	var s [len(p.steps)]time.Duration
	copy(s[:], p.steps[:n])
	slices.Sort(s[:n])
	return s[n/2]
}

// limit is the largest jump that is still the stream going on.
func (p *pacer) limit() time.Duration {
	if p.nsteps < 3 {
		return startDiscontinuity
	}
	return max(discontinuityFrames*p.step(), minDiscontinuity)
}

// discontinuity re-anchors the pacer so that ts is due one typical step
// after the highest timestamp before it, or now if that moment has passed.
func (p *pacer) discontinuity(ts, jump time.Duration) {
	due := p.start.Add(p.high - p.first + p.step())
	if now := p.now(); due.Before(now) {
		due = now
	}
	at := p.high
	p.start, p.first, p.high = due, ts, ts
	p.events++
	if p.log == nil || (p.events > 10 && p.events%100 != 0) {
		return // a source that jumps at every frame would flood the log
	}
	msg := "pacing: the source's timestamps jump forward; not waiting for the gap"
	if jump < 0 {
		msg, jump = "pacing: the source's timestamps jump back; sending on in real time", -jump
	}
	p.log.Debug(msg, "jump", jump, "after", at, "discontinuities", p.events)
}
