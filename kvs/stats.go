package kvs

import (
	"fmt"
	"strings"
	"time"
)

// Stats counts what the producer did.
type Stats struct {
	// Frames counts frames put; Lost, the frames that did not reach the
	// service, and why: those put that could not be sent, and those the
	// source could not put (see Producer.AddLost).
	Frames int64
	Lost   Losses
	// Discontinuities counts jumps of the source's timestamps the
	// producer re-based onto the stream's clock.
	Discontinuities             int64
	Fragments, DroppedFragments int64
	Persisted, Received, Errors int64
	// Rejected counts fragments the service refused for good
	// (non-retriable ERROR acks).
	Rejected int64
	// Recovered counts the fragments (and their frames) a disk buffer held
	// from an earlier run, sent before the new video.
	Recovered, RecoveredFrames int64
	BytesSent                  int64
	Reconnects                 int64
	Connected                  bool
	// LastAckLatency is from a fragment's last frame to its PERSISTED.
	LastAckLatency                time.Duration
	BufferedFragments             int
	BufferedBytes                 int64
	BufferedDuration, MediaSpan   time.Duration
	FirstFrameTime, LastFrameTime time.Time
}

// Losses counts frames that did not reach the service, by reason. Every
// frame put is either sent once, at its own time, or counted here; so is
// every frame of the input its source could not put, when the source says
// so (Producer.AddLost).
type Losses struct {
	// BeforeKeyFrame: video before the first key frame (of the stream, or
	// after a new header), and audio more than the interleaving window
	// before it: there is no fragment a player could start them from.
	BeforeKeyFrame int64
	// Discontinuity: video after the source's timestamps jumped back, up
	// to the next key frame (spliced streams cannot decode them).
	Discontinuity int64
	// OutOfOrder: frames earlier than the fragment they would go in
	// (arrived too late, or timestamps going backwards a little), and key
	// frames whose fragment would not start after the previous one.
	OutOfOrder int64
	// TooLong: frames more than 32.7 s after their fragment's start,
	// which Matroska cannot express: the key-frame interval is too long.
	TooLong int64
	// Overflow: frames of fragments dropped because the buffer was full
	// (ProducerConfig.BufferDuration and BufferBytes).
	Overflow int64
	// Refused: frames of fragments the service refused for good, and the
	// rest of such a fragment up to the next key frame.
	Refused int64
	// Undecodable: pictures the source could not send because they need
	// frames the input does not give (those an MP4 shows between an edit's
	// start and the next key frame need the pre-roll the edit hides).
	Undecodable int64
	// Damaged: frames damaged or missing in the input (MPEG-TS packets
	// lost on the way).
	Damaged int64
	// Torn: frames of fragment files a disk buffer found incomplete or
	// damaged (the program or the machine stopped while writing them, or
	// the disk changed them): they are never sent.
	Torn int64
	// Unacknowledged: frames of fragments in memory that the service had
	// not acknowledged when the producer closed (it could not be reached,
	// or gave up): they go with the process. A disk buffer keeps them for
	// the next start instead.
	Unacknowledged int64
}

// Total returns the frames lost for any reason.
func (l Losses) Total() int64 {
	return l.BeforeKeyFrame + l.Discontinuity + l.OutOfOrder + l.TooLong + l.Overflow + l.Refused + l.Undecodable + l.Damaged + l.Torn + l.Unacknowledged
}

// Add returns the sum of two counts.
func (l Losses) Add(o Losses) Losses {
	return Losses{BeforeKeyFrame: l.BeforeKeyFrame + o.BeforeKeyFrame, Discontinuity: l.Discontinuity + o.Discontinuity,
		OutOfOrder: l.OutOfOrder + o.OutOfOrder, TooLong: l.TooLong + o.TooLong, Overflow: l.Overflow + o.Overflow,
		Refused: l.Refused + o.Refused, Undecodable: l.Undecodable + o.Undecodable, Damaged: l.Damaged + o.Damaged, Torn: l.Torn + o.Torn,
		Unacknowledged: l.Unacknowledged + o.Unacknowledged}
}

// Unexpected returns the frames lost for reasons other than the user's
// own buffer limits and an earlier run's crash (torn files, reported when
// the next run finds them): what should make a run fail.
func (l Losses) Unexpected() int64 { return l.Total() - l.Overflow - l.Torn }

// Reasons lists each reason with its count and a name for metrics,
// in a fixed order.
func (l Losses) Reasons() []LossReason {
	return []LossReason{
		{"before_key_frame", "before the first key frame", l.BeforeKeyFrame},
		{"discontinuity", "after a timestamp jump back, until the next key frame", l.Discontinuity},
		{"out_of_order", "earlier than their fragment (timestamps out of order)", l.OutOfOrder},
		{"too_long", "more than 32 s after their fragment's key frame", l.TooLong},
		{"overflow", "in fragments dropped from a full buffer", l.Overflow},
		{"refused", "in fragments the service refused", l.Refused},
		{"undecodable", "needing frames the input does not give (shown after an MP4 cut, before the next key frame)", l.Undecodable},
		{"damaged", "damaged or missing in the input", l.Damaged},
		{"torn", "in fragment files left incomplete or damaged on disk (the program or the machine stopped while writing them)", l.Torn},
		{"unacknowledged", "not acknowledged by the service when put stopped (held in memory only)", l.Unacknowledged},
	}
}

// LossReason is one line of Losses.Reasons.
type LossReason struct {
	Name, Description string
	Frames            int64
}

// String lists the reasons with frames lost, e.g. "3 before the first key
// frame, 1 in fragments the service refused"; "none" when nothing was lost.
func (l Losses) String() string {
	var parts []string
	for _, r := range l.Reasons() {
		if r.Frames > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", r.Frames, r.Description))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
