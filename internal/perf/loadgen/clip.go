// Package loadgen puts load on a KVS PutMedia server: many paced
// producers, each one long-lived PutMedia connection sending a looped clip
// one write per frame, as cameras do. It measures what the server makes of
// it: fragments persisted, errors, the delay from a fragment's end to its
// PERSISTED acknowledgement, and the server's CPU time and peak memory.
package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/kvsgo/kvsgo/mkv"
)

// Clip is the video every producer sends, looped with continuing
// timestamps.
type Clip struct {
	Track  mkv.Track // the video track, as number 1
	Frames []ClipFrame
	// Loop is the length of one pass: the last frame's time plus one
	// frame interval.
	Loop time.Duration
	// GOP is the time from one key frame to the next: a fragment.
	GOP time.Duration
	// Bytes is the size of one pass.
	Bytes int64
}

// ClipFrame is one frame of the clip.
type ClipFrame struct {
	PTS  time.Duration // from the first frame
	Key  bool
	Data []byte
}

// Bitrate is the clip's average in bits per second.
func (c *Clip) Bitrate() float64 { return float64(c.Bytes) * 8 / c.Loop.Seconds() }

// FPS is the clip's frame rate.
func (c *Clip) FPS() float64 { return float64(len(c.Frames)) / c.Loop.Seconds() }

// LoadClip reads the first video track of a Matroska file. The clip must
// start with a key frame, so that each pass starts a new fragment.
func LoadClip(path string) (*Clip, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the clip: %w", err)
	}
	c, err := parseClip(b)
	if err != nil {
		return nil, fmt.Errorf("clip %s: %w", path, err)
	}
	return c, nil
}

func parseClip(b []byte) (*Clip, error) {
	d := mkv.NewDemuxer(bytes.NewReader(b))
	c := &Clip{}
	video := uint64(0)
	var scale time.Duration
	var first int64
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a Matroska file kvsgo can read: %w", err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			if video != 0 {
				continue
			}
			for _, t := range ev.Header.Tracks {
				if t.Type == mkv.TrackTypeVideo {
					c.Track = t
					c.Track.CodecPrivate = slices.Clone(t.CodecPrivate)
					video = t.Number
					break
				}
			}
			if video == 0 {
				return nil, errors.New("no video track")
			}
			scale = time.Duration(ev.Header.TimecodeScale)
			if scale == 0 {
				scale = mkv.DefaultTimecodeScale
			}
		case mkv.EventBlock:
			if ev.Block.Track != video || video == 0 {
				continue
			}
			if len(c.Frames) == 0 {
				if !ev.Key {
					return nil, errors.New("the first frame is not a key frame")
				}
				first = ev.Timecode
			}
			for _, f := range ev.Block.Frames {
				c.Frames = append(c.Frames, ClipFrame{PTS: time.Duration(ev.Timecode-first) * scale, Key: ev.Key, Data: slices.Clone(f)})
				c.Bytes += int64(len(f))
			}
		}
	}
	if len(c.Frames) < 2 {
		return nil, errors.New("fewer than two video frames")
	}
	c.Track.Number, c.Track.UID = 1, 1
	// Frames in decoding order may have presentation times out of order
	// (B-frames); the loop must start after the latest of them.
	var last time.Duration
	var gaps []time.Duration
	for i, f := range c.Frames {
		last = max(last, f.PTS)
		if i > 0 {
			if g := f.PTS - c.Frames[i-1].PTS; g > 0 {
				gaps = append(gaps, g)
			}
		}
		if f.Key && i > 0 && c.GOP == 0 {
			c.GOP = f.PTS
		}
	}
	if len(gaps) == 0 {
		return nil, errors.New("frames without increasing timestamps")
	}
	slices.Sort(gaps)
	c.Loop = last + gaps[len(gaps)/2]
	if c.GOP == 0 {
		c.GOP = c.Loop // one key frame: each pass is one fragment
	}
	return c, nil
}
