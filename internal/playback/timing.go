package playback

import (
	"slices"
	"time"
)

// VideoTimescale is the clock of video tracks in fMP4 and MPEG-TS.
const VideoTimescale = 90000

// sampleTime is a frame placed on its track's media clock.
type sampleTime struct {
	DTS, PTS int64 // ticks of the track's timescale, absolute
	Duration uint32
}

// Timescale returns the track's media clock rate: 90 kHz for video, the
// sample rate for audio.
func (t *Track) Timescale() uint32 {
	if t.IsVideo() {
		return VideoTimescale
	}
	return uint32(t.AAC.SampleRate)
}

// ticks converts an absolute time, given as whole milliseconds plus an
// offset, to the track's clock without overflowing for epoch times.
func ticks(baseMS int64, rel time.Duration, scale uint32) int64 {
	s := int64(scale)
	return baseMS*s/1000 + (int64(rel)*s+int64(time.Second)/2)/int64(time.Second)
}

// rescale converts ticks between clocks without overflowing for epoch
// times.
func rescale(v, from, to int64) int64 {
	if from == to {
		return v
	}
	return v/from*to + v%from*to/from
}

// deriveDTS gives each video frame a decoding time. Matroska keeps only
// presentation times; frames are stored in decoding order. With reorder
// depth R (frames that may precede a frame in decoding order and follow it
// in presentation order), the i-th frame in decoding order is presented no
// earlier than the (i-R)-th smallest presentation time of the fragment, so
// DTS[i] = sortedPTS[i-R] never exceeds PTS[i], grows monotonically, and
// needs nothing outside the fragment. The first R frames decode one frame
// interval apart before that. R is the larger of what the SPS declares and
// what the fragment shows, so that consecutive fragments of a stream use
// the same R and their decoding times join up.
//
// This holds for x264's b-pyramid, x265's B-frame hierarchies and open-GOP
// leading pictures (whose presentation times precede their key frame's):
// all it assumes is that frames are stored in decoding order.
func (t *Track) deriveDTS(fallback time.Duration) (frameDur time.Duration) {
	n := len(t.Frames)
	sorted := make([]time.Duration, n)
	for i := range t.Frames {
		sorted[i] = t.Frames[i].PTS
	}
	slices.Sort(sorted)
	frameDur = medianStep(sorted, fallback)
	r := max(t.Reorder, observedReorder(t.Frames))
	for i := range t.Frames {
		if i >= r {
			t.Frames[i].DTS = sorted[i-r]
		} else {
			t.Frames[i].DTS = sorted[0] - time.Duration(r-i)*frameDur
		}
	}
	return frameDur
}

// observedReorder is the largest number of frames that precede a frame in
// decoding order but follow it in presentation order.
func observedReorder(frames []Frame) int {
	r := 0
	for i := range frames {
		later := 0
		for j := range i {
			if frames[j].PTS > frames[i].PTS {
				later++
			}
		}
		r = max(r, later)
	}
	return r
}

// medianStep is the median distance between consecutive distinct
// presentation times: the frame interval, robust to a missing frame.
func medianStep(sorted []time.Duration, fallback time.Duration) time.Duration {
	var steps []time.Duration
	for i := 1; i < len(sorted); i++ {
		if d := sorted[i] - sorted[i-1]; d > 0 {
			steps = append(steps, d)
		}
	}
	if len(steps) == 0 {
		if fallback > 0 {
			return fallback
		}
		return time.Second / 30
	}
	slices.Sort(steps)
	return steps[len(steps)/2]
}

// times places a track's frames on its clock, the fragment starting at
// baseMS (epoch milliseconds of the Cluster timecode, producer or server
// time as the session asks). fallback is the frame interval to assume for
// a single-frame fragment.
func (t *Track) times(baseMS int64, fallback time.Duration) []sampleTime {
	if t.IsVideo() {
		return t.videoTimes(baseMS, fallback)
	}
	return t.audioTimes(baseMS)
}

func (t *Track) videoTimes(baseMS int64, fallback time.Duration) []sampleTime {
	frameDur := t.deriveDTS(fallback)
	out := make([]sampleTime, len(t.Frames))
	for i, f := range t.Frames {
		out[i].DTS = ticks(baseMS, f.DTS, VideoTimescale)
		out[i].PTS = ticks(baseMS, f.PTS, VideoTimescale)
	}
	for i := range out {
		if i+1 < len(out) {
			out[i].Duration = uint32(out[i+1].DTS - out[i].DTS)
		} else {
			out[i].Duration = uint32(ticks(0, frameDur, VideoTimescale))
		}
	}
	return out
}

// audioTimes keeps AAC frames exactly one frame (1024 samples) apart while
// their millisecond timestamps stay within half a frame of that, so that
// rounding to milliseconds does not turn into gaps and overlaps a player
// would hear; a real gap re-anchors the clock at the frame's timestamp.
func (t *Track) audioTimes(baseMS int64) []sampleTime {
	scale := t.Timescale()
	step := int64(t.aacSamples())
	out := make([]sampleTime, len(t.Frames))
	for i, f := range t.Frames {
		at := ticks(baseMS, f.PTS, scale)
		if i > 0 {
			want := out[i-1].DTS + step
			if d := at - want; (d < 0 && -d <= step/2) || (d >= 0 && d <= step/2) || at <= out[i-1].DTS {
				at = want
			}
			out[i-1].Duration = uint32(at - out[i-1].DTS)
		}
		out[i].DTS, out[i].PTS = at, at
	}
	if n := len(out); n > 0 {
		out[n-1].Duration = uint32(step)
	}
	return out
}
