// Package wiretap is a TCP proxy that sits between a PutMedia producer and
// the server and timestamps what crosses it, without changing a byte: the
// HTTP requests, the Matroska of PutMedia bodies (fragments and frames, as
// their last byte passes) and the acknowledgements coming back. It shows a
// producer's delays from outside the process: a frame's timecode (wall
// clock, in ABSOLUTE mode) against when it reached the wire, a fragment's
// end against its PERSISTED ack.
package wiretap

import (
	"slices"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// Request is one HTTP request seen on the way to the server.
type Request struct {
	At     time.Time // its first byte
	Method string
	Path   string
}

// Session is one PutMedia request as it crossed the tap.
type Session struct {
	Stream    string    // x-amzn-stream-name
	Opened    time.Time // the request's first byte
	FirstBody time.Time // the body's first byte
	BodyEnded time.Time // the body's last chunk, zero while open
	// Scale is the timecode unit in nanoseconds (the header's
	// TimecodeScale; 1 ms unless it says otherwise).
	Scale     int64
	Frames    []Frame
	Fragments []Fragment
	Acks      []AckAt
	// ScanErr says why the tap stopped following the body (bytes it
	// could not parse; they were still forwarded).
	ScanErr string
}

// Frame is one SimpleBlock of the body.
type Frame struct {
	Track    uint64
	Timecode int64 // absolute: the cluster's plus the block's
	Key      bool
	Size     int       // the block's payload bytes
	At       time.Time // when its last byte crossed the tap
	Fragment int       // index into Session.Fragments
}

// Fragment is one Cluster of the body and what the server said about it.
type Fragment struct {
	Timecode int64
	Started  time.Time // the Cluster's ID crossed the tap
	// Completed is when the server could know the fragment had ended: the
	// start of the next Cluster, Tags or EBML header, or the end of the
	// body. Zero if the connection ended before.
	Completed    time.Time
	Frames       int
	LastTimecode int64 // of its last frame
	// When each acknowledgement of its timecode came back (zero: never).
	Buffering, Received, Persisted, Error time.Time
	ErrorID                               int
}

// AckAt is an acknowledgement and when it crossed the tap.
type AckAt struct {
	kvs.Ack
	At time.Time
}

// Time converts a timecode of the session to the wall-clock time it
// stands for (ABSOLUTE timecodes are milliseconds since 1970).
func (s *Session) Time(timecode int64) time.Time {
	scale := s.Scale
	if scale == 0 {
		scale = 1_000_000
	}
	return time.Unix(0, timecode*scale)
}

// clone copies the session and joins each ack to the fragment of its
// timecode. Acks are matched here, not as they arrive: an ack can cross
// the tap before the bytes it acknowledges have been scanned, since the
// tap forwards first and scans after.
func (s *Session) clone() Session {
	c := *s
	c.Frames = slices.Clone(s.Frames)
	c.Fragments = slices.Clone(s.Fragments)
	c.Acks = slices.Clone(s.Acks)
	byTC := make(map[int64]int, len(c.Fragments))
	for i, f := range c.Fragments {
		if _, dup := byTC[f.Timecode]; !dup {
			byTC[f.Timecode] = i
		}
	}
	for _, a := range c.Acks {
		i, ok := byTC[a.FragmentTimecode]
		if !ok || !a.HasTimecode {
			continue
		}
		f := &c.Fragments[i]
		set := func(t *time.Time) {
			if t.IsZero() {
				*t = a.At
			}
		}
		switch a.EventType {
		case kvs.AckBuffering:
			set(&f.Buffering)
		case kvs.AckReceived:
			set(&f.Received)
		case kvs.AckPersisted:
			set(&f.Persisted)
		case kvs.AckError:
			set(&f.Error)
			f.ErrorID = a.ErrorID
		}
	}
	return c
}
