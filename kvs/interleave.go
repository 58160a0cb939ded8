package kvs

import "time"

// interleaver orders the frames of all tracks by time before they are
// written, as AWS's producer does (its FrameOrderCoordinator): a FIFO per
// track, and the head with the earliest time goes first, once every live
// track has a frame queued. Audio earlier than a video key frame therefore
// lands in the fragment before it, at its own time.
//
// The time a frame is ordered by is its presentation time, except for the
// key frame that starts a fragment: the fragment starts at the earliest
// presentation time of that key frame and its leading pictures (H.265
// RASL/RADL, H.264 open-GOP B-frames: after it in decoding order, before it
// in presentation order), so that no frame of a fragment is earlier than
// the fragment. A key frame whose PTS equals its DTS cannot have leading
// pictures (every later frame is decoded, so presented, after it) unless
// the track reorders frames; otherwise it is held until the first later
// frame presented after it.
//
// A track is live while its frames keep coming: one that has sent nothing
// for window of media time (a camera's audio that stopped) no longer holds
// the others back, and no frame waits longer than window.
type interleaver struct {
	window time.Duration
	// holdFrames bounds how many frames a key frame waits for its leading
	// pictures.
	holdFrames int
	tracks     []*trackQueue
	// the stream's input so far: first and newest decoding time
	first, newest time.Duration
	started       bool
}

type trackQueue struct {
	num   uint8
	frag  bool // its key frames start fragments
	video bool
	q     []queued
	head  int
	// input state
	lastIn    time.Duration
	any       bool
	reordered bool // frames come out of presentation order
	maxPTS    time.Duration
	// hold is the index in q of a key frame still collecting its leading
	// pictures, -1 if none.
	hold int
	// clusterTC is the start of the fragment the track's last released
	// key frame opened: later frames are ordered at or after it.
	clusterTC time.Duration
	spare     [][]byte
}

// queued is a frame waiting in the interleaver.
type queued struct {
	track    uint8
	pts, dts time.Duration // absolute
	key      bool
	data     []byte
	borrowed bool // data is the caller's: copy before Put returns
	// a key frame of the fragmenting track: it starts a fragment at start,
	// final once resolved
	starts   bool
	resolved bool
	start    time.Duration
	held     int // frames seen behind it while held
}

func newInterleaver(window time.Duration) *interleaver {
	return &interleaver{window: window, holdFrames: 16}
}

// addTrack declares a track; frag marks the track whose key frames start
// fragments.
func (il *interleaver) addTrack(num uint8, video, frag bool) {
	il.tracks = append(il.tracks, &trackQueue{num: num, video: video, frag: frag, hold: -1})
}

func (il *interleaver) track(num uint8) *trackQueue {
	for _, t := range il.tracks {
		if t.num == num {
			return t
		}
	}
	return nil
}

func (tq *trackQueue) peek() *queued {
	if tq.head == len(tq.q) {
		return nil
	}
	return &tq.q[tq.head]
}

// push queues a frame, borrowing data until keep is called.
func (il *interleaver) push(tq *trackQueue, f queued) {
	if !il.started {
		il.first, il.newest, il.started = f.dts, f.dts, true
	}
	il.newest = max(il.newest, f.dts)
	if f.pts != f.dts || (tq.any && f.pts < tq.maxPTS) {
		tq.reordered = true
	}
	tq.lastIn, tq.any = f.dts, true
	tq.maxPTS = max(tq.maxPTS, f.pts)
	f.borrowed = true
	if tq.frag {
		il.leading(tq, &f)
	}
	if tq.head > 0 && tq.head == len(tq.q) {
		tq.q, tq.head = tq.q[:0], 0
		if tq.hold >= 0 {
			tq.hold = -1
		}
	}
	tq.q = append(tq.q, f)
	if f.starts && !f.resolved {
		tq.hold = len(tq.q) - 1
	}
}

// leading updates the key frame being held with a frame of its track, and
// decides whether a new key frame must be held itself.
func (il *interleaver) leading(tq *trackQueue, f *queued) {
	if tq.hold >= 0 {
		k := &tq.q[tq.hold]
		switch {
		case f.key:
			k.resolved = true // the next key frame ends the leading pictures
		case f.pts < k.pts:
			k.start = min(k.start, f.pts) // a leading picture
			k.held++
			if k.held >= il.holdFrames {
				k.resolved = true
			}
		default:
			k.resolved = true // presented after the key frame: no more leading pictures
		}
		if k.resolved {
			tq.hold = -1
		}
	}
	if f.key {
		f.starts, f.start = true, f.pts
		f.resolved = f.pts == f.dts && !tq.reordered
	}
}

// keep copies the data of frames still queued out of the caller's memory,
// into buffers of released frames.
func (il *interleaver) keep() {
	for _, tq := range il.tracks {
		for i := tq.head; i < len(tq.q); i++ {
			f := &tq.q[i]
			if !f.borrowed {
				continue
			}
			var buf []byte
			if n := len(tq.spare); n > 0 {
				buf, tq.spare = tq.spare[n-1][:0], tq.spare[:n-1]
			}
			f.data, f.borrowed = append(buf, f.data...), false
		}
	}
}

// release returns a frame's buffer for reuse.
func (il *interleaver) release(tq *trackQueue, f *queued) {
	if !f.borrowed && f.data != nil && len(tq.spare) < 8 {
		tq.spare = append(tq.spare, f.data[:0])
	}
	f.data = nil
}

// live reports whether the interleaver must wait for a frame of tq.
func (il *interleaver) live(tq *trackQueue) bool {
	if !tq.any {
		return il.newest-il.first < il.window
	}
	return tq.lastIn >= il.newest-il.window
}

// orderTime is when a queued frame is due, or false while it cannot be
// placed yet (a key frame collecting its leading pictures).
func (tq *trackQueue) orderTime(f *queued) (time.Duration, bool) {
	if f.starts {
		return f.start, f.resolved
	}
	if tq.video {
		// In decoding order, behind its key frame: never before the
		// fragment that key frame opened.
		return max(tq.clusterTC, min(f.pts, f.dts)), true
	}
	return f.pts, true
}

// next returns the track whose head frame goes out next, or nil when the
// interleaver must wait for more input. flush releases everything.
func (il *interleaver) next(flush bool) *trackQueue {
	// A frame that has waited a window's worth of input goes out without
	// the tracks that sent nothing meanwhile.
	wait := !flush && !il.stale()
	var best *trackQueue
	var bestT time.Duration
	for _, tq := range il.tracks {
		f := tq.peek()
		if f == nil {
			if wait && il.live(tq) {
				return nil // wait for this track
			}
			continue
		}
		t, ok := tq.orderTime(f)
		if !ok {
			if !flush && il.newest-f.dts < il.window {
				return nil // its leading pictures may still come
			}
			f.resolved = true // held long enough
			tq.hold = -1
			t = f.start
		}
		// At equal times the fragment's key frame goes first, so that the
		// other tracks' frames of that instant go in its fragment.
		if best == nil || t < bestT || (t == bestT && f.starts) {
			best, bestT = tq, t
		}
	}
	return best
}

// pop removes the head of a track's queue.
func (tq *trackQueue) pop() queued {
	f := tq.q[tq.head]
	tq.q[tq.head] = queued{}
	tq.head++
	if tq.hold >= 0 && tq.hold < tq.head {
		tq.hold = -1
	}
	return f
}

// stale reports whether the oldest queued frame has waited for other
// tracks longer than the window: it goes out without them.
func (il *interleaver) stale() bool {
	for _, tq := range il.tracks {
		if f := tq.peek(); f != nil && il.newest-f.dts >= il.window {
			return true
		}
	}
	return false
}
