package source

import (
	"math"
	"time"
)

// An MP4 edit list (elst) says which part of a track's media players show
// and when. `ffmpeg -ss 1.5 -i in.mp4 -c copy out.mp4` keeps the frames from
// the key frame before 1.5 s (the pre-roll a decoder needs) and hides them
// with an edit that starts at 1.5 s; encoders hide AAC's priming samples and
// the delay B-frames add the same way. kvsgo sends what players show:
// nothing an edit hides, at the time the edit gives it.
//
// Matroska, and so Kinesis Video Streams, cannot carry a frame that is
// decoded but not shown. So the pictures between an edit's start and the
// next key frame, which players show but which need the hidden pre-roll to
// decode, cannot be sent either; kvsgo says how many.

// mp4Segment is a non-empty edit: the media times [start, end) of a track,
// shown from pos on the presentation timeline, where base is at pos.
type mp4Segment struct {
	start, end int64 // track timescale; end math.MaxInt64: to the end
	base       int64
	pos        time.Duration
	last       bool
}

// mp4Segments turns a track's edit list into segments, with a note for
// each edit kvsgo cannot follow exactly.
func mp4Segments(t *mp4Track, movieScale uint32) ([]mp4Segment, []string) {
	var (
		segs  []mp4Segment
		notes []string
		pos   int64 // movie timescale
	)
	for _, e := range t.edits {
		switch {
		case e.mediaTime == -1:
			// An empty edit: the track starts later.
		case e.mediaTime < 0:
			notes = append(notes, "an edit with a negative media time is ignored")
			continue
		case e.rate == 0:
			notes = append(notes, "a dwell edit (a held picture) is sent as a gap")
		default:
			if e.rate != 1<<16 {
				notes = append(notes, "an edit at another speed is sent at normal speed")
			}
			end := int64(math.MaxInt64)
			if e.duration != 0 {
				end = satAdd(e.mediaTime, rescale(e.duration, movieScale, t.timescale))
			}
			segs = append(segs, mp4Segment{start: e.mediaTime, end: end, base: e.mediaTime, pos: mediaDuration(pos, movieScale)})
		}
		pos = satAdd(pos, int64(min(e.duration, math.MaxInt64)))
	}
	if len(segs) == 0 {
		// No edit list, or one that shows nothing (which no player takes
		// literally): the media as it is, after any empty edits.
		segs = []mp4Segment{{start: math.MinInt64, end: math.MaxInt64, pos: mediaDuration(pos, movieScale)}}
		if !t.hasEdits {
			segs[0].pos = 0
		}
	}
	segs[len(segs)-1].last = true
	return segs, notes
}

// mp4Out is a sample to send: presentation and decoding times on the
// presentation timeline, and where its bytes are.
type mp4Out struct {
	track    uint8
	pts, dts time.Duration
	key      bool
	offset   int64
	size     uint32
}

// mp4Reader yields the samples of one track that players show, through its
// edit list, in decoding order.
type mp4Reader struct {
	number uint8
	video  bool
	track  *mp4Track
	segs   []mp4Segment
	seg    int
	cur    mp4Cursor
	keyed  bool  // this segment's first key frame is found
	keyCTS int64 // and its composition time

	hidden int // samples the edit list hides
	// lost counts video samples players show that cannot be sent without
	// hidden ones (between an edit's start and the next key frame), from
	// lostFrom to lostTo on the presentation timeline.
	lost             int
	lostFrom, lostTo time.Duration
}

func newMP4Reader(number uint8, video bool, t *mp4Track, segs []mp4Segment) *mp4Reader {
	return &mp4Reader{number: number, video: video, track: t, segs: segs, cur: newMP4Cursor(&t.table)}
}

// next returns the next sample to send; false at the end of the track.
func (r *mp4Reader) next() (mp4Out, bool, error) {
	for r.seg < len(r.segs) {
		sg := &r.segs[r.seg]
		s, ok, err := r.cur.next()
		if err != nil {
			return mp4Out{}, false, err
		}
		if !ok || r.ends(sg, s) {
			r.seg++
			r.cur, r.keyed = newMP4Cursor(&r.track.table), false
			continue
		}
		if r.shows(sg, s) {
			ts := r.track.timescale
			out := mp4Out{track: r.number, key: s.sync || !r.video, offset: s.offset, size: s.size,
				pts: time.Duration(satAdd(int64(sg.pos), int64(mediaDuration(satSub(s.cts, sg.base), ts)))),
				dts: time.Duration(satAdd(int64(sg.pos), int64(mediaDuration(satSub(s.dts, sg.base), ts))))}
			if !r.video {
				out.dts = out.pts
			}
			return out, true, nil
		}
	}
	return mp4Out{}, false, nil
}

// ends reports whether s is past segment sg. The last segment goes on to
// the end of the media, as ffmpeg plays it; an earlier one ends at the
// first key frame at or after its end (frames before that may still be
// references of frames inside it).
func (r *mp4Reader) ends(sg *mp4Segment, s mp4Sample) bool {
	if sg.last || s.cts < sg.end {
		return false
	}
	return s.sync || !r.video
}

// shows decides whether sample s of segment sg is sent, and counts it if
// not.
func (r *mp4Reader) shows(sg *mp4Segment, s mp4Sample) bool {
	if !r.video {
		if satAdd(s.cts, int64(s.duration)) <= sg.start || (s.cts >= sg.end && !sg.last) {
			r.hidden++
			return false
		}
		return true
	}
	if !r.keyed && s.sync && s.cts >= sg.start {
		r.keyed, r.keyCTS = true, s.cts
	}
	switch {
	case s.cts < sg.start, s.cts >= sg.end && !sg.last:
		r.hidden++
		return false
	case !r.keyed || s.cts < r.keyCTS:
		// Shown by players, but it needs frames before the edit (or, for
		// an open GOP's leading pictures, before the key frame) to decode.
		pts := time.Duration(satAdd(int64(sg.pos), int64(mediaDuration(satSub(s.cts, sg.base), r.track.timescale))))
		if r.lost == 0 {
			r.lostFrom, r.lostTo = pts, pts
		}
		r.lostFrom, r.lostTo = min(r.lostFrom, pts), max(r.lostTo, pts)
		r.lost++
		return false
	}
	return true
}
