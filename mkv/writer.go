package mkv

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// Writer writes a KVS-style Matroska stream: the header once, then a
// Cluster (one KVS fragment) at every key frame of the fragmenting track.
// Each frame goes out in a single Write, and once its scratch buffer has
// grown to the largest frame the Writer allocates nothing per frame.
//
// WriteFrame decides cluster boundaries itself. A caller that orders
// frames across tracks and knows better where a fragment starts (KVS's
// producer does: a cluster starts at the earliest presentation time of a
// key frame and its leading pictures) uses StartCluster and WriteBlock
// instead, and writes the header itself (WriteHeader).
type Writer struct {
	w      io.Writer
	header Header
	scale  int64
	// fragTrack is the track whose key frames start fragments: the first
	// video track, else the first track.
	fragTrack uint64

	buf []byte
	// pending bytes at the start of buf (a new Cluster and the tags
	// before it) go out with the next block.
	pending    int
	open       bool // a Cluster with blocks is in the output and not ended
	wroteHead  bool
	inCluster  bool
	clusterTC  int64
	pendingTag []SimpleTag
}

// NewWriter returns a Writer of h to w. The header itself is written with
// the first frame, or by WriteHeader.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if len(h.Tracks) == 0 {
		return nil, fmt.Errorf("%w: no tracks", ErrInvalid)
	}
	// Matroska forbids zero UIDs: a random SegmentUID, as the KVS SDK
	// makes per stream, and track UIDs from their numbers.
	if h.SegmentUID == [16]byte{} {
		_, _ = rand.Read(h.SegmentUID[:])
	}
	h.Tracks = append([]Track(nil), h.Tracks...)
	for i := range h.Tracks {
		if h.Tracks[i].UID == 0 {
			h.Tracks[i].UID = h.Tracks[i].Number
		}
	}
	wr := &Writer{w: w, header: h, scale: int64(h.timecodeScale())}
	wr.fragTrack = h.Tracks[0].Number
	for _, t := range h.Tracks {
		if t.Type == TrackTypeVideo {
			wr.fragTrack = t.Number
			break
		}
	}
	return wr, nil
}

// Timecode converts a timestamp to timecode units of this stream, to the
// nearest unit as ffmpeg's Matroska muxer does: a time a source computed
// as 383.999999 ms is 384 ms.
func (w *Writer) Timecode(t time.Duration) int64 {
	n := int64(t) + w.scale/2
	if n < 0 {
		return (n - w.scale + 1) / w.scale
	}
	return n / w.scale
}

// WriteHeader writes the EBML header, Segment, Info and Tracks. Writing it
// again (for a new connection) is allowed and starts a new Segment.
func (w *Writer) WriteHeader() error {
	var err error
	w.buf, err = AppendHeader(w.buf[:0], &w.header)
	if err != nil {
		return err
	}
	if _, err := w.w.Write(w.buf); err != nil {
		return err
	}
	w.wroteHead, w.inCluster, w.pending, w.open = true, false, 0, false
	return nil
}

// AddFragmentTag queues a tag to be written before the next fragment's
// Cluster, as KVS fragment metadata. Tags may not be placed inside a
// Cluster, and a Tags element after a Cluster would end that fragment.
func (w *Writer) AddFragmentTag(name, value string) {
	w.pendingTag = append(w.pendingTag, SimpleTag{Name: name, Value: value})
}

// WriteFrame writes one frame of a track, presented at pts (the absolute
// time in ABSOLUTE timecode mode). A key frame of the fragmenting track
// starts a new fragment; the first frame must be one. It returns
// ErrNeedKeyFrame for frames before that, which callers drop.
func (w *Writer) WriteFrame(track uint64, pts time.Duration, key bool, data []byte) error {
	if w.header.track(track) == nil {
		return fmt.Errorf("%w: track %d", ErrUnknownTrack, track)
	}
	tc := w.Timecode(pts)
	b := w.buf[:w.pending]
	if !w.wroteHead {
		var err error
		if b, err = AppendHeader(b, &w.header); err != nil {
			return err
		}
	}
	newCluster := key && track == w.fragTrack
	if !newCluster && !w.inCluster {
		return ErrNeedKeyFrame
	}
	if newCluster {
		if w.inCluster && tc < w.clusterTC {
			return fmt.Errorf("%w: %d after %d", ErrTimecodeOrder, tc, w.clusterTC)
		}
		for _, t := range w.pendingTag {
			b = AppendTags(b, t)
		}
		w.pendingTag = w.pendingTag[:0]
		b = AppendClusterStart(b, uint64(tc))
	}
	clusterTC := w.clusterTC
	if newCluster {
		clusterTC = tc
	}
	rel := tc - clusterTC
	if rel < 0 || rel > 32767 {
		return fmt.Errorf("%w: %d units from the cluster start", ErrBlockTimecode, rel)
	}
	var flags byte
	if key {
		flags = FlagKey
	}
	b = AppendSimpleBlockHeader(b, track, int16(rel), flags, len(data))
	b = append(b, data...)
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	w.wroteHead = true
	w.inCluster = true
	w.clusterTC = clusterTC
	w.pending, w.open = 0, true
	return nil
}

// StartCluster begins a new Cluster (a new KVS fragment) at time t, after
// any queued fragment tags. Its bytes go out with the next WriteBlock, so
// that a frame is still one Write. The timecode must be after the previous
// cluster's: KVS refuses fragments whose timecode does not increase.
func (w *Writer) StartCluster(t time.Duration) error {
	tc := w.Timecode(t)
	if w.inCluster && tc <= w.clusterTC {
		return fmt.Errorf("%w: cluster at %d after %d", ErrTimecodeOrder, tc, w.clusterTC)
	}
	if tc < 0 {
		return fmt.Errorf("%w: cluster at %d", ErrTimecodeOrder, tc)
	}
	b := w.buf[:0]
	for _, t := range w.pendingTag {
		b = AppendTags(b, t)
	}
	w.pendingTag = w.pendingTag[:0]
	b = AppendClusterStart(b, uint64(tc))
	w.buf, w.pending = b, len(b)
	w.inCluster, w.clusterTC = true, tc
	return nil
}

// ClusterTimecode returns the current cluster's timecode and whether a
// cluster is open.
func (w *Writer) ClusterTimecode() (int64, bool) { return w.clusterTC, w.inCluster }

// WriteBlock writes one frame of a track into the current cluster,
// presented at pts; it never starts a cluster. ErrNeedKeyFrame means no
// cluster is open; ErrBlockTimecode that pts is before the cluster or more
// than 32767 units after it (Matroska's signed 16-bit relative timecode;
// KVS's producer writes none below zero).
func (w *Writer) WriteBlock(track uint64, pts time.Duration, key bool, data []byte) error {
	if w.header.track(track) == nil {
		return fmt.Errorf("%w: track %d", ErrUnknownTrack, track)
	}
	if !w.inCluster {
		return ErrNeedKeyFrame
	}
	rel := w.Timecode(pts) - w.clusterTC
	if pts < 0 || rel < 0 || rel > 32767 {
		return fmt.Errorf("%w: %d units from the cluster start", ErrBlockTimecode, rel)
	}
	var flags byte
	if key {
		flags = FlagKey
	}
	b := AppendSimpleBlockHeader(w.buf[:w.pending], track, int16(rel), flags, len(data))
	b = append(b, data...)
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	w.pending, w.open = 0, true
	return nil
}

// EndFragment closes the current fragment with an
// AWS_KINESISVIDEO_END_OF_FRAGMENT tag, as the KVS SDK does at the end of a
// stream, so that the service can complete the fragment without waiting for
// the next one. The next frame must be a key frame.
func (w *Writer) EndFragment() error {
	// A cluster that got no frame was never written; the one before it,
	// if any, is what the tag ends.
	w.pending, w.inCluster = 0, false
	if !w.open {
		return nil
	}
	w.buf = AppendTags(w.buf[:0], SimpleTag{Name: TagEndOfFragment})
	w.open = false
	_, err := w.w.Write(w.buf)
	return err
}
