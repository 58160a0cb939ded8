package kvs

import "time"

// timeline puts the source's timestamps on the stream's clock: absolute
// time (since the Unix epoch), as KVS's ABSOLUTE fragment timecodes are.
// The first frame is at the wall clock; every later frame keeps its
// distance from it, so tracks stay in sync and a file sent faster than
// real time keeps its own timing.
//
// Sources do not always keep one clock: `cat a.ts b.ts` starts again at
// b's first timestamps, `-output_ts_offset` or a camera's clock reset jumps
// ahead. A timestamp far behind its own track, or far ahead of every
// track, is a discontinuity: from it on, the source's clock is mapped
// anew, to continue right after what the stream already holds (or at the
// wall clock, when that is more than a jump later: a live source's gap). Each mapping is an epoch; the other
// tracks, whose jump comes a few frames later, join the new epoch when
// their timestamps land near its start, so they stay in sync with each
// other across the jump.
type timeline struct {
	now func() time.Time
	// jump is how far ahead of the stream a timestamp may be, and how
	// far a track may go back (beyond reordering), before it counts as a
	// discontinuity.
	jump     time.Duration
	reorder  time.Duration
	epochs   []epoch
	tracks   []trackClock
	maxAbs   time.Duration // latest time given to any frame
	started  bool
	nextID   int
	maxEpoch int // epochs kept for tracks that join late
	// notBefore: the first frame goes no earlier than this (what a disk
	// buffer holds from an earlier run ends just before it), even if the
	// wall clock is behind it.
	notBefore time.Duration
}

type epoch struct {
	id     int
	back   bool          // it began with a jump back
	offset time.Duration // absolute time = source time + offset
	// the source times it covers so far, over all tracks
	srcStart, srcLatest time.Duration
}

type trackClock struct {
	num     uint8
	epoch   int // id
	maxDTS  time.Duration
	step    time.Duration // last positive distance between frames
	started bool
}

// placed is where a frame went.
type placed struct {
	pts, dts time.Duration // absolute
	// newEpoch: this frame's jump started a new mapping; by is how far
	// the source's clock jumped.
	newEpoch bool
	by       time.Duration
	// joined: the frame's track moved to a newer mapping (its own jump or
	// another track's); back: that mapping began with a jump back.
	joined, back bool
}

func newTimeline(now func() time.Time, jump time.Duration) *timeline {
	return &timeline{now: now, jump: jump, reorder: jump / 2, maxEpoch: 4}
}

func (t *timeline) clock(track uint8) *trackClock {
	for i := range t.tracks {
		if t.tracks[i].num == track {
			return &t.tracks[i]
		}
	}
	t.tracks = append(t.tracks, trackClock{num: track})
	return &t.tracks[len(t.tracks)-1]
}

func (t *timeline) epoch(id int) *epoch {
	for i := range t.epochs {
		if t.epochs[i].id == id {
			return &t.epochs[i]
		}
	}
	return nil
}

func (t *timeline) newest() *epoch { return &t.epochs[len(t.epochs)-1] }

// wallClock is the current time on the stream's clock.
func (t *timeline) wallClock() time.Duration { return time.Duration(t.now().UnixNano()) }

// place maps a frame's timestamps onto the stream's clock.
func (t *timeline) place(track uint8, pts, dts time.Duration) placed {
	src := min(pts, dts)
	if !t.started {
		t.started = true
		// A whole number of milliseconds (KVS's timecode unit): times that
		// were whole milliseconds in the source (Matroska) stay exact, and
		// the others round as the source's own muxer would.
		offset := (max(t.wallClock(), t.notBefore) - pts).Truncate(time.Millisecond)
		if pts+offset < t.notBefore {
			offset += time.Millisecond
		}
		t.epochs = append(t.epochs, epoch{id: t.nextID, offset: offset, srcStart: src, srcLatest: src})
		t.nextID++
	}
	c := t.clock(track)
	res := placed{}
	e := t.epoch(c.epoch)
	switch {
	case !c.started || e == nil:
		// A track's first frame joins the stream's current clock: tracks
		// of one source share it, even when one starts well after another.
		e = t.newest()
	case dts < c.maxDTS-t.reorder || dts > e.srcLatest+max(t.jump, 3*c.step):
		if n := t.join(c, dts); n != nil {
			e = n
			break
		}
		res.newEpoch, res.by = true, dts-c.maxDTS
		// Continue right after everything the stream holds. A live
		// source that was away longer than a jump (the camera was gone)
		// continues at the wall clock instead, so the gap shows; a shorter
		// lateness is only delivery (a busy machine, a late pacer) and must
		// not open a gap between frames that follow each other.
		step := max(c.step, time.Millisecond)
		target := t.maxAbs + step
		if w := t.wallClock(); w-target > t.jump {
			target = w
		}
		offset := target - src
		if r := offset % time.Millisecond; r != 0 {
			offset += time.Millisecond - r // whole milliseconds, never earlier
		}
		t.epochs = append(t.epochs, epoch{id: t.nextID, back: res.by < 0, offset: offset, srcStart: src, srcLatest: src})
		t.nextID++
		if len(t.epochs) > t.maxEpoch {
			t.epochs = append(t.epochs[:0], t.epochs[len(t.epochs)-t.maxEpoch:]...)
		}
		e = t.newest()
		c.maxDTS = dts
	}
	if c.started && c.epoch == e.id && dts > c.maxDTS {
		c.step = dts - c.maxDTS
	}
	if c.started && c.epoch != e.id {
		res.joined, res.back = true, e.back
	}
	if !c.started || c.epoch != e.id {
		c.maxDTS = dts
	}
	c.started, c.epoch = true, e.id
	c.maxDTS = max(c.maxDTS, dts)
	e.srcStart = min(e.srcStart, src)
	e.srcLatest = max(e.srcLatest, dts)
	res.pts, res.dts = pts+e.offset, dts+e.offset
	t.maxAbs = max(t.maxAbs, res.pts, res.dts)
	return res
}

// join finds a newer epoch whose source times this track's timestamp
// continues: another track already jumped there.
func (t *timeline) join(c *trackClock, dts time.Duration) *epoch {
	window := 2 * t.jump
	for i := len(t.epochs) - 1; i >= 0; i-- {
		e := &t.epochs[i]
		if e.id <= c.epoch {
			break
		}
		if dts >= e.srcStart-window && dts <= e.srcLatest+window {
			return e
		}
	}
	return nil
}
