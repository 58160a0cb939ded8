package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Fragment is the index entry of one stored fragment.
type Fragment struct {
	Seq uint64 `json:"n"`
	// Producer and server timestamps and length, in milliseconds.
	ProducerMS int64 `json:"p"`
	ServerMS   int64 `json:"s"`
	DurationMS int64 `json:"d"`
	// Timecode is the Cluster timecode exactly as the producer sent it.
	Timecode int64 `json:"tc"`
	// Where the bytes are: the connection's header and the fragment body
	// (the producer's Tags before the Cluster, and the Cluster).
	Segment   uint32 `json:"g"`
	HeaderOff int64  `json:"ho"`
	HeaderLen int64  `json:"hl"`
	BodyOff   int64  `json:"bo"`
	BodyLen   int64  `json:"bl"`
}

// fragmentNumberPrefix makes numbers look like the service's 47-digit ones;
// the 36 digits after it are the store-wide sequence, so that numbers sort
// as text and as numbers alike.
const fragmentNumberPrefix = "91343852333"

// Number is the fragment number as the API shows it.
func (f Fragment) Number() string { return FragmentNumber(f.Seq) }

// Size is the fragment's size in bytes as ListFragments reports it.
func (f Fragment) Size() int64 { return f.BodyLen }

// FragmentNumber formats a sequence number.
func FragmentNumber(seq uint64) string { return fmt.Sprintf("%s%036d", fragmentNumberPrefix, seq) }

// ParseFragmentNumber reads a fragment number back into its sequence.
func ParseFragmentNumber(s string) (uint64, error) {
	digits, ok := strings.CutPrefix(s, fragmentNumberPrefix)
	if !ok || len(digits) != 36 {
		return 0, fmt.Errorf("%w: %q is not a fragment number of this server", ErrFragmentNotFound, s)
	}
	return strconv.ParseUint(digits, 10, 64)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// ptimeKey orders the producer-timestamp index by timestamp, then by
// ingestion (sequence): equal timestamps stay apart, oldest first. The
// timestamp's sign bit is flipped so that negative timestamps (a producer
// clock before 1970, or RELATIVE timecodes with no start) sort before
// positive ones, as big-endian bytes compare.
func ptimeKey(ms int64, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(ms)^1<<63), seq)
}

// ptimeOf reads the timestamp back from a ptimeKey.
func ptimeOf(k []byte) int64 { return int64(binary.BigEndian.Uint64(k) ^ 1<<63) }

// streamState is the in-memory side of a stream: its open segment file,
// the header last written to it, the channel that wakes live readers, and
// its one PutMedia connection. It exists while someone uses the stream (a
// PutMedia session, a live reader, a write): the Store counts references
// and forgets it, closing its segment file, when the last one goes.
type streamState struct {
	id        StreamID
	refs      int       // under Store.mu
	idleSince time.Time // under Store.mu: when refs last went to 0

	mu      sync.Mutex // the segment file and the fragment being written
	seg     File
	segID   uint32
	segSize int64
	hdr     []byte
	hdrSeg  uint32
	hdrOff  int64
	writing bool // a FragmentWriter is open

	notifyMu sync.Mutex
	notify   chan struct{}
	deleted  bool          // under notifyMu
	gone     chan struct{} // closed when the stream is deleted
	waiting  atomic.Int32  // readers in WaitAfter, past their last look

	ingestMu  sync.Mutex
	ingesting bool
}

func newStreamState(id StreamID) *streamState {
	return &streamState{id: id, notify: make(chan struct{}), gone: make(chan struct{})}
}

func (st *streamState) closeSegment() {
	if st.seg != nil {
		st.seg.Close()
		st.seg = nil
	}
}

// wake tells waiting readers that something changed.
func (st *streamState) wake() {
	st.notifyMu.Lock()
	close(st.notify)
	st.notify = make(chan struct{})
	st.notifyMu.Unlock()
}

func (st *streamState) changed() <-chan struct{} {
	st.notifyMu.Lock()
	defer st.notifyMu.Unlock()
	return st.notify
}

func (st *streamState) markDeleted() {
	st.notifyMu.Lock()
	if !st.deleted {
		st.deleted = true
		close(st.gone)
	}
	st.notifyMu.Unlock()
	st.wake()
}

func (st *streamState) isDeleted() bool {
	st.notifyMu.Lock()
	defer st.notifyMu.Unlock()
	return st.deleted
}

// closedGone is what Gone returns for a stream nothing holds.
var closedGone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Gone returns a channel that is closed when the stream is deleted, for
// the holder of its PutMedia connection (AcquireIngest) to end its session
// then. Without that claim there is nothing to watch: the channel returned
// is closed.
func (s *Store) Gone(id StreamID) <-chan struct{} {
	if st := s.lookup(id); st != nil {
		return st.gone
	}
	return closedGone
}

// AcquireIngest claims the stream's one PutMedia connection. It returns
// false if another connection holds it. release gives it back; ended says
// whether the producer finished its body (the end of its stream) rather
// than breaking off.
func (s *Store) AcquireIngest(id StreamID) (release func(ended bool), ok bool) {
	st := s.acquire(id)
	st.ingestMu.Lock()
	if st.ingesting {
		st.ingestMu.Unlock()
		s.release(st)
		return nil, false
	}
	st.ingesting = true
	st.ingestMu.Unlock()
	s.markEnded(id, false)
	st.wake()
	return func(ended bool) {
		if ended {
			s.markEnded(id, true)
		}
		st.ingestMu.Lock()
		st.ingesting = false
		st.ingestMu.Unlock()
		st.wake()
		s.release(st)
	}, true
}

// markEnded records (or clears) the clean end of a PutMedia session.
func (s *Store) markEnded(id StreamID, ended bool) {
	if !ended {
		// Most connections have nothing to clear: no write (and fsync) then.
		if rec, err := s.StreamByID(id); err != nil || !rec.Ended {
			return
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getStreamID(tx, id)
		if err != nil || (!ended && !rec.Ended) {
			return nil // deleted, or nothing to clear
		}
		rec.Ended, rec.EndSeq, rec.EndedMS = ended, 0, 0
		if ended {
			rec.EndedMS = s.now().UnixMilli()
			if fb := tx.Bucket(fragBucket(id)); fb != nil {
				if k, _ := fb.Cursor().Last(); k != nil {
					rec.EndSeq = binary.BigEndian.Uint64(k)
				}
			}
		}
		return putJSON(tx.Bucket(bucketStreams), rec.Name, rec)
	})
	if err != nil {
		s.log.Warn("could not record the end of a PutMedia session", "stream", id.Name(), "err", err)
	}
}

// ProducerState is what GetMedia needs to know about a stream's producer.
type ProducerState struct {
	// Connected: a PutMedia connection is open.
	Connected bool
	// Ended: the last session finished its body; EndSeq was the newest
	// fragment then (0 if none), EndedMS when (Unix ms).
	Ended   bool
	EndSeq  uint64
	EndedMS int64
}

// Producer reports the state of the stream's producer.
func (s *Store) Producer(id StreamID) (ProducerState, error) {
	var p ProducerState
	if st := s.lookup(id); st != nil {
		st.ingestMu.Lock()
		p.Connected = st.ingesting
		st.ingestMu.Unlock()
	}
	rec, err := s.StreamByID(id)
	if err != nil {
		return p, err
	}
	if !p.Connected {
		p.Ended, p.EndSeq, p.EndedMS = rec.Ended, rec.EndSeq, rec.EndedMS
	}
	return p, nil
}

// NewFragment is a complete fragment from ingest.
type NewFragment struct {
	// Seq from ReserveFragment.
	Seq                              uint64
	Header                           []byte
	Body                             []byte
	ProducerMS, ServerMS, DurationMS int64
	Timecode                         int64
}

// AppendFragment stores a fragment durably under its own number. The one
// exception is a producer's resend: a fragment byte for byte identical to
// one the stream has, with the same producer timestamp, is not stored
// twice; the stored one is returned with dup set. Fragments that only share
// a producer timestamp are different fragments and are all kept (playback
// de-duplicates them, as the service does). Ingest writes through a
// FragmentWriter instead, as the bytes arrive.
func (s *Store) AppendFragment(id StreamID, nf NewFragment) (f Fragment, dup bool, err error) {
	w, err := s.BeginFragment(id, nf.Header)
	if err != nil {
		return f, false, err
	}
	if _, err := w.Write(nf.Body); err != nil {
		w.Abort()
		return f, false, err
	}
	return w.Commit(FragmentMeta{Seq: nf.Seq, ProducerMS: nf.ProducerMS, ServerMS: nf.ServerMS, DurationMS: nf.DurationMS, Timecode: nf.Timecode})
}

// identical finds a stored fragment with producer timestamp producerMS and
// the bytes of body (read with readBody, of length n). Equal timestamps
// are rare (a resend, or a producer that restarted its clock), so reading
// the candidates back costs little.
func (s *Store) identical(id StreamID, producerMS, n int64, body func() ([]byte, error)) (Fragment, bool, error) {
	var candidates []Fragment
	err := s.ScanByProducerTime(id, producerMS, func(f Fragment) bool {
		if f.ProducerMS != producerMS {
			return false
		}
		if f.BodyLen == n {
			candidates = append(candidates, f)
		}
		return true
	})
	if err != nil || len(candidates) == 0 {
		return Fragment{}, false, err
	}
	mine, err := body()
	if err != nil {
		return Fragment{}, false, err
	}
	for _, f := range candidates {
		_, stored, err := s.ReadFragment(id, f)
		if errors.Is(err, ErrFragmentNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return Fragment{}, false, err
		}
		if bytes.Equal(stored, mine) {
			return f, true, nil
		}
	}
	return Fragment{}, false, nil
}

// ensureSegment opens the stream's current segment, or a new one when
// none is open (after a start, which leaves any torn tail of the previous
// run unreferenced) or the current one is full.
func (s *Store) ensureSegment(st *streamState) error {
	if st.seg != nil && st.segSize < s.opts.SegmentSize {
		return nil
	}
	st.closeSegment()
	dir := s.mediaDir(st.id)
	if st.segID == 0 {
		if _, err := s.fs.Stat(dir); err != nil {
			if err := s.fs.MkdirAll(dir, 0o755); err != nil {
				return diskErr("creating the stream's media directory", err)
			}
			if !s.opts.NoSync {
				if err := s.fs.SyncDir(filepath.Dir(dir)); err != nil {
					return diskErr("syncing the media directory", err)
				}
			}
		}
		entries, _ := s.fs.ReadDir(dir)
		for _, e := range entries {
			if id, ok := parseSegmentName(e.Name()); ok && id > st.segID {
				st.segID = id
			}
		}
	}
	st.segID++
	f, err := s.fs.OpenFile(filepath.Join(dir, segmentName(st.segID)), os.O_CREATE|os.O_EXCL|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return diskErr("creating a segment file", err)
	}
	// The new file's directory entry must be durable too, or a power cut
	// could take the whole file with it.
	if !s.opts.NoSync {
		if err := s.fs.SyncDir(dir); err != nil {
			f.Close()
			return diskErr("syncing the stream's media directory", err)
		}
	}
	st.seg, st.segSize, st.hdr = f, 0, st.hdr[:0]
	return nil
}

// Fragment returns one fragment by sequence number.
func (s *Store) Fragment(id StreamID, seq uint64) (Fragment, error) {
	var f Fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(id))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		data := fb.Get(seqKey(seq))
		if data == nil {
			return fmt.Errorf("%w: %s", ErrFragmentNotFound, FragmentNumber(seq))
		}
		return json.Unmarshal(data, &f)
	})
	return f, err
}

// Scan calls fn for the stream's fragments in ingestion order (fragment
// number), starting after afterSeq, until fn returns false.
func (s *Store) Scan(id StreamID, afterSeq uint64, fn func(Fragment) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(id))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		c := fb.Cursor()
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil; k, v = c.Next() {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			if !fn(f) {
				return nil
			}
		}
		return nil
	})
}

// ScanByProducerTime calls fn for the stream's fragments in producer
// timestamp order, from fromMS on; fragments with equal producer timestamps
// come in ingestion order, the first ingested first. It stops when fn
// returns false.
func (s *Store) ScanByProducerTime(id StreamID, fromMS int64, fn func(Fragment) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		fb, pb := tx.Bucket(fragBucket(id)), tx.Bucket(ptimeBucket(id))
		if fb == nil || pb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		c := pb.Cursor()
		for k, v := c.Seek(ptimeKey(fromMS, 0)); k != nil; k, v = c.Next() {
			data := fb.Get(v)
			if data == nil {
				continue
			}
			var f Fragment
			if err := json.Unmarshal(data, &f); err != nil {
				return err
			}
			if !fn(f) {
				return nil
			}
		}
		return nil
	})
}

// FirstWithProducerTime returns the sequence number of the first-ingested
// fragment the stream has with this producer timestamp (ok false if none).
// Playback de-duplicates with it, as the service does: a fragment f is a
// duplicate when FirstWithProducerTime(id, f.ProducerMS) is not f.Seq. It
// costs one index lookup.
func (s *Store) FirstWithProducerTime(id StreamID, producerMS int64) (seq uint64, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		pb := tx.Bucket(ptimeBucket(id))
		if pb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		k, v := pb.Cursor().Seek(ptimeKey(producerMS, 0))
		if k != nil && ptimeOf(k) == producerMS {
			seq, ok = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	return seq, ok, err
}

// Latest returns the newest fragment's sequence number, 0 if none.
func (s *Store) Latest(id StreamID) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(id))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		if k, _ := fb.Cursor().Last(); k != nil {
			seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return seq, err
}

// WaitAfter blocks until the stream has a fragment newer than afterSeq, its
// producer connects or disconnects, the stream is deleted (then it returns
// ErrStreamNotFound), or ctx ends.
func (s *Store) WaitAfter(ctx context.Context, id StreamID, afterSeq uint64) error {
	return s.waitAfter(ctx, id, afterSeq, nil)
}

// WaitAfterProducer is WaitAfter that also returns when the stream's
// producer is no longer as seen (its session ended, or another began):
// such a change between the caller's look and the wait would otherwise be
// missed, and a reader at the live edge would wait for ever.
func (s *Store) WaitAfterProducer(ctx context.Context, id StreamID, afterSeq uint64, seen ProducerState) error {
	return s.waitAfter(ctx, id, afterSeq, func() bool {
		cur, err := s.Producer(id)
		return err != nil || cur != seen
	})
}

func (s *Store) waitAfter(ctx context.Context, id StreamID, afterSeq uint64, changedSince func() bool) error {
	st := s.acquire(id)
	defer s.release(st)
	ch := st.changed() // before looking: a change after the look wakes it
	latest, err := s.Latest(id)
	if err != nil {
		return err
	}
	if latest > afterSeq || (changedSince != nil && changedSince()) {
		return nil
	}
	st.waiting.Add(1)
	defer st.waiting.Add(-1)
	select {
	case <-ch:
		if st.isDeleted() {
			return fmt.Errorf("%w: %s (deleted)", ErrStreamNotFound, id)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
}

// ReadFragment returns a fragment's header and body bytes.
func (s *Store) ReadFragment(id StreamID, f Fragment) (header, body []byte, err error) {
	file, err := s.fs.OpenFile(filepath.Join(s.mediaDir(id), segmentName(f.Segment)), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s (expired or deleted)", ErrFragmentNotFound, f.Number())
		}
		return nil, nil, err
	}
	defer file.Close()
	header = make([]byte, f.HeaderLen)
	body = make([]byte, f.BodyLen)
	if _, err := file.ReadAt(header, f.HeaderOff); err != nil {
		return nil, nil, fmt.Errorf("reading fragment %s: %w", f.Number(), unexpected(err))
	}
	if _, err := file.ReadAt(body, f.BodyOff); err != nil {
		return nil, nil, fmt.Errorf("reading fragment %s: %w", f.Number(), unexpected(err))
	}
	return header, body, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
