package store

import (
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrBusy: a fragment of the stream is already being written.
var ErrBusy = errors.New("a fragment of this stream is already being written")

// FragmentMeta is what the index records of a fragment besides where its
// bytes are.
type FragmentMeta struct {
	// Seq from ReserveFragment; 0 takes the next number.
	Seq                              uint64
	ProducerMS, ServerMS, DurationMS int64
	Timecode                         int64
}

// FragmentWriter writes one fragment through to its stream's segment file
// as its bytes arrive, so that ingest holds a few buffers per connection
// and never a whole fragment. Commit makes it durable and indexed; Abort
// (or any failure) truncates what was written, so the segment never keeps
// half a fragment. One writer per stream at a time; its methods are not
// for concurrent use.
type FragmentWriter struct {
	s     *Store
	st    *streamState
	seg   File
	segID uint32
	hdrOff,
	hdrLen int64
	start int64 // where the fragment's bytes begin in the segment
	n     int64
	err   error
	ended bool
}

// BeginFragment starts a fragment of the stream, to be written with the
// connection's header (EBML, Segment, Info, Tracks): the header is written
// to the segment once, before the first fragment that has it.
func (s *Store) BeginFragment(id StreamID, header []byte) (*FragmentWriter, error) {
	st := s.acquire(id)
	w, err := s.begin(st, header)
	if err != nil {
		s.release(st)
		return nil, err
	}
	return w, nil
}

func (s *Store) begin(st *streamState, header []byte) (*FragmentWriter, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.isDeleted() {
		return nil, fmt.Errorf("%w: %s", ErrStreamNotFound, st.id)
	}
	if _, err := s.StreamByID(st.id); err != nil {
		return nil, err // deleted before anyone held it: no files for it
	}
	if st.writing {
		return nil, fmt.Errorf("%w (%s)", ErrBusy, st.id)
	}
	if err := s.ensureSegment(st); err != nil {
		return nil, err
	}
	if st.hdrSeg != st.segID || string(st.hdr) != string(header) {
		n, err := st.seg.Write(header)
		if err != nil {
			// Whatever part of it landed is unreferenced; start afresh.
			st.closeSegment()
			return nil, diskErr("writing the stream header to disk", err)
		}
		st.hdr, st.hdrSeg, st.hdrOff = append(st.hdr[:0], header...), st.segID, st.segSize
		st.segSize += int64(n)
	}
	st.writing = true
	return &FragmentWriter{s: s, st: st, seg: st.seg, segID: st.segID,
		hdrOff: st.hdrOff, hdrLen: int64(len(st.hdr)), start: st.segSize}, nil
}

// Len returns how many bytes of the fragment have been written.
func (w *FragmentWriter) Len() int64 { return w.n }

// Write appends bytes of the fragment to its segment file.
func (w *FragmentWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.ended {
		return 0, errors.New("store: write to a finished fragment")
	}
	st := w.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.isDeleted() || st.seg != w.seg {
		w.err = fmt.Errorf("%w: %s", ErrStreamNotFound, st.id)
		return 0, w.err
	}
	n, err := w.seg.Write(p)
	st.segSize += int64(n)
	w.n += int64(n)
	if err != nil {
		w.err = diskErr("writing media to disk", err)
	}
	return n, w.err
}

// Commit makes the fragment durable: its segment is fsynced, then its index
// entry committed with those of other streams (group commit); only then does
// it return, and only then may the fragment be acknowledged PERSISTED. A
// fragment byte for byte identical to a stored one with the same producer
// timestamp is a producer's resend: it is not kept, and the stored one is
// returned with dup set. On error nothing of the fragment is kept.
func (w *FragmentWriter) Commit(m FragmentMeta) (f Fragment, dup bool, err error) {
	if w.ended {
		return f, false, errors.New("store: fragment committed or aborted already")
	}
	if w.err != nil {
		w.Abort()
		return f, false, w.err
	}
	s, st := w.s, w.st
	existing, dup, err := s.identical(st.id, m.ProducerMS, w.n, w.body)
	if err != nil || dup {
		w.Abort()
		return existing, dup, err
	}
	// The bytes reach the disk before the index points at them.
	if !s.opts.NoSync {
		if err := w.seg.Sync(); err != nil {
			w.err = diskErr("syncing media to disk", err)
			w.abort(true) // after a failed fsync the file's state is unknown
			return f, false, w.deletedOr(w.err)
		}
	}
	f = Fragment{ProducerMS: m.ProducerMS, ServerMS: m.ServerMS, DurationMS: m.DurationMS, Timecode: m.Timecode,
		Segment: w.segID, HeaderOff: w.hdrOff, HeaderLen: w.hdrLen, BodyOff: w.start, BodyLen: w.n}
	err = s.commits.commit(st.id, func(tx *bolt.Tx) error {
		fb, pb := tx.Bucket(fragBucket(st.id)), tx.Bucket(ptimeBucket(st.id))
		if fb == nil || pb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, st.id)
		}
		meta := tx.Bucket(bucketMeta)
		seq := m.Seq
		if seq == 0 {
			seq = s.ReserveFragment()
		}
		if seq > meta.Sequence() {
			if err := meta.SetSequence(seq); err != nil {
				return err
			}
		}
		f.Seq = seq
		data, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if err := fb.Put(seqKey(seq), data); err != nil {
			return err
		}
		return pb.Put(ptimeKey(m.ProducerMS, seq), seqKey(seq))
	})
	if err != nil {
		w.err = err
		w.abort(false)
		return Fragment{}, false, w.deletedOr(err)
	}
	w.finish()
	return f, false, nil
}

// Abort drops the fragment: what was written of it is truncated away.
func (w *FragmentWriter) Abort() {
	if !w.ended {
		w.abort(false)
	}
}

func (w *FragmentWriter) abort(closeSegment bool) {
	st := w.st
	st.mu.Lock()
	if st.seg == w.seg && !closeSegment {
		if err := w.seg.Truncate(w.start); err != nil {
			closeSegment = true // the next fragment starts a new segment instead
		} else {
			st.segSize = w.start
		}
	}
	if closeSegment && st.seg == w.seg {
		_ = w.seg.Truncate(w.start) // best effort: unreferenced either way
		st.closeSegment()
	}
	st.mu.Unlock()
	w.finish()
}

func (w *FragmentWriter) finish() {
	w.ended = true
	w.st.mu.Lock()
	w.st.writing = false
	w.st.mu.Unlock()
	w.s.release(w.st)
}

// deletedOr reports the stream's deletion, which explains any failure
// that came with it, or err.
func (w *FragmentWriter) deletedOr(err error) error {
	if w.st.isDeleted() {
		return fmt.Errorf("%w: %s", ErrStreamNotFound, w.st.id)
	}
	return err
}

// body reads the fragment's bytes back, for comparing with a stored one.
func (w *FragmentWriter) body() ([]byte, error) {
	b := make([]byte, w.n)
	if _, err := w.seg.ReadAt(b, w.start); err != nil {
		return nil, fmt.Errorf("reading a fragment back: %w", unexpected(err))
	}
	return b, nil
}
