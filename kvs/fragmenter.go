package kvs

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

// fragmentSink receives what the frame path makes: each fragment's start
// (its cluster timecode in milliseconds, and the stream header it belongs
// to) and then its bytes.
type fragmentSink interface {
	startFragment(timecode int64, header []byte)
	appendFragment(p []byte)
	// frameWritten counts a frame into the newest fragment.
	frameWritten()
	// endFragment marks the newest fragment complete.
	endFragment()
}

// framePath turns frames, as a source delivers them, into KVS fragments:
// the timeline puts them on the stream's clock, the interleaver orders
// the tracks by time, and the fragmenter (here) starts a cluster at each
// key frame of the fragmenting track, at the earliest time of it and its
// leading pictures, or every AudioFragment of audio when there is no
// video. Every frame is written once at its own time, or counted lost
// with its reason. Not safe for concurrent use: the producer holds its
// lock.
type framePath struct {
	cfg  pathConfig
	sink fragmentSink
	tl   *timeline
	il   *interleaver
	w    *mkv.Writer

	tracks    []media.Track
	header    []byte
	fragTrack uint8 // 0: no video, fragments by time

	open bool // a cluster is open
	// early: the cluster was opened before the key frame at the head of
	// the fragmenting track, for frames of other tracks just before it
	early     bool
	lastTC    int64 // milliseconds
	haveTC    bool
	clusterAt time.Duration // absolute start of the open cluster
	keys      int
	firstKey  time.Duration
	// skip drops video of a track until its next key frame, after its
	// timestamps jumped back; the count is Lost.Discontinuity. The value
	// says whether the user was told.
	skip map[uint8]bool
	// drop drops every frame up to the next fragment start (the service
	// refused the fragment being written); fragSkip, frames of the
	// fragmenting track up to its next key frame (one that could not
	// start a fragment). Each points at the loss counter to charge.
	drop, fragSkip *int64

	stats *Stats
	warn  func(key, msg string)
	event func(Event)
}

type pathConfig struct {
	Now func() time.Time
	// Window bounds how long a frame waits for the other tracks, and how
	// long a key frame waits for its leading pictures (media time).
	Window time.Duration
	// Jump is the timestamp jump that counts as a discontinuity.
	Jump time.Duration
	// AudioFragment is the fragment duration when there is no video.
	AudioFragment time.Duration
}

// errFrameOrder means a key frame could not start a fragment after the
// previous one.
var errFrameOrder = errors.New("key frame not after the previous fragment")

func newFramePath(cfg pathConfig, sink fragmentSink, stats *Stats, warn func(key, msg string), event func(Event)) *framePath {
	return &framePath{cfg: cfg, sink: sink, tl: newTimeline(cfg.Now, cfg.Jump), stats: stats, warn: warn, event: event, skip: map[uint8]bool{}}
}

// headerFor builds the Matroska header of a set of tracks.
func headerFor(tracks []media.Track) (mkv.Header, error) {
	if len(tracks) == 0 {
		return mkv.Header{}, errors.New("no tracks")
	}
	if len(tracks) > 3 {
		return mkv.Header{}, fmt.Errorf("%d tracks: Kinesis Video Streams takes at most 3", len(tracks))
	}
	var h mkv.Header
	for _, t := range tracks {
		// Matroska forbids zero UIDs (GStreamer refuses the track): the
		// number does, as the KVS SDK's track IDs do.
		mt := mkv.Track{Number: uint64(t.Number), UID: uint64(t.Number), Name: t.Name, CodecID: t.CodecID, CodecPrivate: t.CodecPrivate}
		switch t.Kind {
		case media.KindVideo:
			mt.Type, mt.Width, mt.Height = mkv.TrackTypeVideo, uint16(t.Width), uint16(t.Height)
		case media.KindAudio:
			mt.Type, mt.SamplingFrequency, mt.Channels = mkv.TrackTypeAudio, t.SampleRate, uint8(t.Channels)
		default:
			return mkv.Header{}, fmt.Errorf("track %d is neither video nor audio", t.Number)
		}
		h.Tracks = append(h.Tracks, mt)
	}
	return h, nil
}

// setTracks starts the path, or switches it to a new set of tracks: what
// is queued goes out under the old header, and the next fragment starts
// with the new one.
func (fp *framePath) setTracks(tracks []media.Track, segmentUID [16]byte) error {
	h, err := headerFor(tracks)
	if err != nil {
		return err
	}
	h.SegmentUID = segmentUID
	w, err := mkv.NewWriter(pathWriter{fp}, h)
	if err != nil {
		return err
	}
	header, err := mkv.AppendHeader(nil, &h)
	if err != nil {
		return err
	}
	if fp.w != nil {
		// What came under the old header goes out under it, in a fragment
		// that ends here.
		if err := fp.end(); err != nil {
			return err
		}
	}
	fp.w, fp.header, fp.tracks = w, header, append([]media.Track(nil), tracks...)
	fp.open, fp.early = false, false
	fp.fragTrack = 0
	fp.il = newInterleaver(fp.cfg.Window)
	for _, t := range tracks {
		video := t.Kind == media.KindVideo
		frag := video && fp.fragTrack == 0
		if frag {
			fp.fragTrack = t.Number
		}
		fp.il.addTrack(t.Number, video, frag)
	}
	return nil
}

// pathWriter hands the Writer's bytes to the sink.
type pathWriter struct{ fp *framePath }

func (w pathWriter) Write(p []byte) (int, error) {
	w.fp.sink.appendFragment(p)
	return len(p), nil
}

// put takes a frame from the source.
func (fp *framePath) put(f media.Frame) error {
	tq := fp.il.track(f.Track)
	if tq == nil {
		return fmt.Errorf("a frame of track %d, which the stream does not have", f.Track)
	}
	fp.stats.Frames++
	pl := fp.tl.place(f.Track, f.PTS, f.DTS)
	if pl.newEpoch {
		fp.discontinuity(f, pl)
	}
	if tq.video && pl.joined && pl.back {
		// A stream spliced after its key frame: its pictures refer to
		// ones that never came.
		fp.skip[f.Track] = false
	}
	if told, ok := fp.skip[f.Track]; ok {
		if !f.Key {
			if !told {
				fp.skip[f.Track] = true
				fp.event(Event{Type: EventWarning, Message: fmt.Sprintf(
					"the video after the jump back does not start at a key frame (track %d, at %s: clips joined in the middle of a GOP): its frames up to the next key frame cannot be decoded and are not sent",
					f.Track, f.DTS.Round(time.Millisecond))})
			}
			fp.stats.Lost.Discontinuity++
			return nil
		}
		delete(fp.skip, f.Track)
	}
	if tq.frag && f.PTS != f.DTS {
		fp.warn("bframes", "the source has B-frames: they add latency and some players stutter on them; cameras and encoders can turn them off (x264 bframes=0, ffmpeg -bf 0)")
	}
	fp.il.push(tq, queued{track: f.Track, pts: pl.pts, dts: pl.dts, key: f.Key, data: f.Data})
	fp.drain(false)
	fp.il.keep()
	return nil
}

func (fp *framePath) discontinuity(f media.Frame, pl placed) {
	fp.stats.Discontinuities++
	msg := fmt.Sprintf("the source's timestamps jumped ahead by %s (track %d, to %s): the stream goes on without a gap of that size",
		pl.by.Round(time.Millisecond), f.Track, f.DTS.Round(time.Millisecond))
	if pl.back {
		msg = fmt.Sprintf("the source's timestamps jumped back by %s (track %d, to %s; a new clip joined on?): the stream goes on after what it holds, without overlap",
			(-pl.by).Round(time.Millisecond), f.Track, f.DTS.Round(time.Millisecond))
	}
	fp.event(Event{Type: EventDiscontinuity, Message: msg})
}

// drain writes every frame the interleaver lets go.
func (fp *framePath) drain(flush bool) {
	for {
		if !fp.open && fp.fragTrack != 0 && !fp.beforeFirstKey(flush) {
			return
		}
		tq := fp.il.next(flush)
		if tq == nil {
			return
		}
		f := tq.pop()
		if f.starts {
			tq.clusterTC = f.start
		}
		fp.emit(tq, &f)
		fp.il.release(tq, &f)
	}
}

// flush writes everything queued.
func (fp *framePath) flush() { fp.drain(true) }

// end writes what is queued and closes the last fragment.
func (fp *framePath) end() error {
	fp.flush()
	fp.open, fp.early = false, false
	if err := fp.w.EndFragment(); err != nil {
		return err
	}
	fp.sink.endFragment()
	return nil
}

// refused drops what is left of the newest fragment: the service refused
// it, and would refuse the rest.
func (fp *framePath) refused() {
	if fp.fragTrack == 0 {
		fp.open = false // audio only: the next frame starts a fragment
		return
	}
	fp.drop = &fp.stats.Lost.Refused
}

// emit writes one frame, starting a fragment where one starts.
func (fp *framePath) emit(tq *trackQueue, f *queued) {
	if fp.drop != nil {
		if !f.starts {
			*fp.drop++
			return
		}
		fp.drop = nil
	}
	if fp.fragSkip != nil && f.track == fp.fragTrack {
		if !f.starts {
			*fp.fragSkip++
			return
		}
		fp.fragSkip = nil
	}
	switch {
	case fp.fragTrack == 0:
		// No video: a fragment every AudioFragment.
		if !fp.open || f.pts-fp.clusterAt >= fp.cfg.AudioFragment {
			if err := fp.startCluster(f.pts); err != nil && !fp.open {
				fp.stats.Lost.OutOfOrder++
				return
			}
		}
	case f.starts && fp.early:
		fp.early = false // the cluster opened for it is its own
		fp.keyFrameStarted(f.start)
	case f.starts:
		if err := fp.startCluster(f.start); err != nil {
			fp.stats.Lost.OutOfOrder++
			fp.fragSkip = &fp.stats.Lost.OutOfOrder
			fp.warn("keyorder", fmt.Sprintf("a key frame's fragment would start at %s, not after the previous fragment: its frames are dropped up to the next key frame. Check the source's timestamps", time.Duration(f.start).Round(time.Millisecond)))
			return
		}
		fp.keyFrameStarted(f.start)
	case !fp.open:
		if !fp.openEarly(f) {
			fp.stats.Lost.BeforeKeyFrame++
			return
		}
	}
	if f.track == fp.fragTrack && fp.open && f.pts-fp.clusterAt > 20*time.Second {
		fp.warn("longfragment", "no key frame for 20 s: Kinesis Video Streams refuses fragments longer than 20 s (error 4002); set the encoder's key-frame interval to about the frame rate (x264enc key-int-max, ffmpeg -g, rpicam-vid --intra)")
	}
	err := fp.w.WriteBlock(uint64(f.track), f.pts, f.key, f.data)
	switch {
	case err == nil:
		fp.sink.frameWritten()
	case errors.Is(err, mkv.ErrBlockTimecode) && f.pts >= fp.clusterAt:
		fp.stats.Lost.TooLong++
		fp.warn("toolong", "a frame is more than 32 s after its fragment's key frame, which Matroska cannot express: it is dropped; set the encoder's key-frame interval to about the frame rate")
	default:
		fp.stats.Lost.OutOfOrder++
		fp.warn("outoforder", fmt.Sprintf("a frame of track %d is earlier than the fragment it would go in (%v): dropped. Its timestamps are out of order with the other tracks' by more than %s", f.track, err, fp.cfg.Window))
	}
}

// beforeFirstKey deals with the frames queued while no fragment is open
// (at the start, or after a new header): video before the key frame that
// will open it is lost, and so is the other tracks' media more than the
// window before it; the rest waits for the key frame. It reports whether
// the key frame is at the head of its track, ready to go.
func (fp *framePath) beforeFirstKey(flush bool) bool {
	frag := fp.il.track(fp.fragTrack)
	for {
		k := frag.peek()
		if k == nil {
			break
		}
		if k.starts {
			if k.resolved {
				return true
			}
			if !flush && fp.il.newest-k.dts < fp.cfg.Window {
				return false // its leading pictures may still come
			}
			k.resolved, frag.hold = true, -1
			return true
		}
		f := frag.pop()
		fp.stats.Lost.BeforeKeyFrame++
		fp.il.release(frag, &f)
	}
	// No key frame yet: what is too old to join its fragment is lost.
	for _, tq := range fp.il.tracks {
		for f := tq.peek(); f != nil && (flush || fp.il.newest-f.pts > fp.cfg.Window); f = tq.peek() {
			g := tq.pop()
			fp.stats.Lost.BeforeKeyFrame++
			fp.il.release(tq, &g)
		}
	}
	return false
}

// openEarly opens the first fragment (of the stream, or after a new
// header) for a frame of another track that comes just before the key
// frame waiting at the head of the fragmenting track: audio that starts a
// moment before the video stays, at its own time.
func (fp *framePath) openEarly(f *queued) bool {
	if f.track == fp.fragTrack {
		return false // video before the first key frame: nothing decodes it
	}
	k := fp.il.track(fp.fragTrack).peek()
	if k == nil || !k.starts || !k.resolved || k.start-f.pts > fp.cfg.Window {
		return false
	}
	if err := fp.startCluster(f.pts); err != nil {
		return false
	}
	fp.early = true
	return true
}

// startCluster begins a fragment at t.
func (fp *framePath) startCluster(t time.Duration) error {
	tc := fp.w.Timecode(t)
	if fp.haveTC && tc <= fp.lastTC {
		return errFrameOrder
	}
	fp.sink.startFragment(tc, fp.header)
	if err := fp.w.StartCluster(t); err != nil {
		return err
	}
	fp.open, fp.clusterAt, fp.lastTC, fp.haveTC = true, t, tc, true
	fp.stats.Fragments++
	return nil
}

// keyFrameStarted checks the key-frame interval once, on the second
// fragment: the service wants fragments of 1 to 20 s.
func (fp *framePath) keyFrameStarted(at time.Duration) {
	fp.keys++
	if fp.keys == 1 {
		fp.firstKey = at
	}
	if fp.keys != 2 {
		return
	}
	d := at - fp.firstKey
	switch {
	case d > 20*time.Second:
		fp.warn("keyint", fmt.Sprintf("key frames come every %s: Kinesis Video Streams refuses fragments over 20 s (error 4002); set the encoder's key-frame interval to about the frame rate", d.Round(time.Millisecond)))
	case d < time.Second:
		fp.warn("keyint", fmt.Sprintf("key frames come every %s: each starts a fragment, and Kinesis Video Streams expects fragments of 1 to 20 s (and at most 5 a second); a key-frame interval of 1 to 2 s is best", d.Round(time.Millisecond)))
	}
}
