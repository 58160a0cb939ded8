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

// streamState is the in-memory side of a stream: its open segment file,
// the header last written to it, and the channel that wakes live readers.
type streamState struct {
	name string

	mu      sync.Mutex // serialises appends
	seg     *os.File
	segID   uint32
	segSize int64
	hdr     []byte
	hdrSeg  uint32
	hdrOff  int64
	deleted bool

	notifyMu sync.Mutex
	notify   chan struct{}

	ingestMu      sync.Mutex
	ingesting     bool
	lastIngestEnd time.Time
}

func newStreamState(name string) *streamState {
	return &streamState{name: name, notify: make(chan struct{})}
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

// AcquireIngest claims the stream's one PutMedia connection. It returns
// false if another connection holds it.
func (s *Store) AcquireIngest(name string) (release func(), ok bool) {
	st := s.state(name)
	st.ingestMu.Lock()
	defer st.ingestMu.Unlock()
	if st.ingesting {
		return nil, false
	}
	st.ingesting = true
	return func() {
		st.ingestMu.Lock()
		st.ingesting = false
		st.lastIngestEnd = s.now()
		st.ingestMu.Unlock()
		st.wake()
	}, true
}

// ProducerIdle reports how long no PutMedia connection has been open on the
// stream (0 while one is), and whether one ever was since the server
// started.
func (s *Store) ProducerIdle(name string) (idle time.Duration, seen bool) {
	st := s.state(name)
	st.ingestMu.Lock()
	defer st.ingestMu.Unlock()
	if st.ingesting {
		return 0, true
	}
	if st.lastIngestEnd.IsZero() {
		return 0, false
	}
	return s.now().Sub(st.lastIngestEnd), true
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

// AppendFragment stores a fragment durably. A fragment whose producer
// timestamp the stream already has (one sent again after a reconnect) is not
// stored twice: the existing one is returned with dup set.
func (s *Store) AppendFragment(name string, nf NewFragment) (f Fragment, dup bool, err error) {
	st := s.state(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deleted {
		return f, false, fmt.Errorf("%w: %s", ErrStreamNotFound, name)
	}
	if existing, ok, err := s.byProducerTime(name, nf.ProducerMS); err != nil || ok {
		return existing, ok, err
	}
	if err := s.ensureSegment(st, int64(len(nf.Header)+len(nf.Body))); err != nil {
		return f, false, err
	}
	f = Fragment{ProducerMS: nf.ProducerMS, ServerMS: nf.ServerMS, DurationMS: nf.DurationMS, Timecode: nf.Timecode, Segment: st.segID}
	if st.hdrSeg != st.segID || !bytes.Equal(st.hdr, nf.Header) {
		if _, err := st.seg.Write(nf.Header); err != nil {
			return f, false, s.segmentFailed(st, err)
		}
		st.hdr, st.hdrSeg, st.hdrOff = append(st.hdr[:0], nf.Header...), st.segID, st.segSize
		st.segSize += int64(len(nf.Header))
	}
	f.HeaderOff, f.HeaderLen = st.hdrOff, int64(len(st.hdr))
	if _, err := st.seg.Write(nf.Body); err != nil {
		return f, false, s.segmentFailed(st, err)
	}
	f.BodyOff, f.BodyLen = st.segSize, int64(len(nf.Body))
	st.segSize += int64(len(nf.Body))
	// The bytes reach the disk before the index points at them.
	if !s.opts.NoSync {
		if err := st.seg.Sync(); err != nil {
			return f, false, s.segmentFailed(st, err)
		}
	}
	commit := s.db.Batch // group commit across streams
	if s.opts.NoSync {
		commit = s.db.Update // nothing to group: no waiting for company
	}
	err = commit(func(tx *bolt.Tx) error {
		fb, pb := tx.Bucket(fragBucket(name)), tx.Bucket(ptimeBucket(name))
		if fb == nil || pb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
		}
		meta := tx.Bucket(bucketMeta)
		seq := nf.Seq
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
		return pb.Put(seqKey(uint64(nf.ProducerMS)), seqKey(seq))
	})
	if err != nil {
		return f, false, fmt.Errorf("indexing a fragment: %w", err)
	}
	st.wake()
	return f, false, nil
}

// segmentFailed closes a segment whose write failed, so the next fragment
// starts a fresh one rather than appending after a torn write.
func (s *Store) segmentFailed(st *streamState, err error) error {
	st.closeSegment()
	return fmt.Errorf("writing media to disk: %w", err)
}

// ensureSegment opens the stream's current segment, or a new one when
// none is open (after a start, which leaves any torn tail of the previous
// run unreferenced) or the current one is full.
func (s *Store) ensureSegment(st *streamState, need int64) error {
	if st.seg != nil && st.segSize+need <= s.opts.SegmentSize {
		return nil
	}
	if st.seg != nil && st.segSize == 0 {
		return nil // a fragment larger than a segment gets one of its own
	}
	st.closeSegment()
	dir := s.mediaDir(st.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the stream's media directory: %w", err)
	}
	if st.segID == 0 {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if id, ok := parseSegmentName(e.Name()); ok && id > st.segID {
				st.segID = id
			}
		}
	}
	st.segID++
	f, err := os.OpenFile(filepath.Join(dir, segmentName(st.segID)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("creating a segment file: %w", err)
	}
	// Make the new file's directory entry durable too.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	st.seg, st.segSize, st.hdr = f, 0, st.hdr[:0]
	return nil
}

func segmentName(id uint32) string { return fmt.Sprintf("%08d.mkv", id) }

func parseSegmentName(n string) (uint32, bool) {
	base, ok := strings.CutSuffix(n, ".mkv")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(base, 10, 32)
	return uint32(v), err == nil
}

func (s *Store) byProducerTime(name string, ms int64) (Fragment, bool, error) {
	var f Fragment
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		pb, fb := tx.Bucket(ptimeBucket(name)), tx.Bucket(fragBucket(name))
		if pb == nil || fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
		}
		seq := pb.Get(seqKey(uint64(ms)))
		if seq == nil {
			return nil
		}
		data := fb.Get(seq)
		if data == nil {
			return nil
		}
		found = true
		return json.Unmarshal(data, &f)
	})
	return f, found, err
}

// Fragment returns one fragment by sequence number.
func (s *Store) Fragment(name string, seq uint64) (Fragment, error) {
	var f Fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(name))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
		}
		data := fb.Get(seqKey(seq))
		if data == nil {
			return fmt.Errorf("%w: %s", ErrFragmentNotFound, FragmentNumber(seq))
		}
		return json.Unmarshal(data, &f)
	})
	return f, err
}

// Scan calls fn for the stream's fragments in order, starting after
// afterSeq, until fn returns false.
func (s *Store) Scan(name string, afterSeq uint64, fn func(Fragment) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(name))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
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

// Latest returns the newest fragment's sequence number, 0 if none.
func (s *Store) Latest(name string) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(name))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
		}
		if k, _ := fb.Cursor().Last(); k != nil {
			seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return seq, err
}

// WaitAfter blocks until the stream has a fragment newer than afterSeq, its
// producer connection changes, the stream is deleted, or ctx ends.
func (s *Store) WaitAfter(ctx context.Context, name string, afterSeq uint64) error {
	st := s.state(name)
	ch := st.changed()
	latest, err := s.Latest(name)
	if err != nil {
		return err
	}
	if latest > afterSeq {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
}

// ReadFragment returns a fragment's header and body bytes.
func (s *Store) ReadFragment(name string, f Fragment) (header, body []byte, err error) {
	file, err := os.Open(filepath.Join(s.mediaDir(name), segmentName(f.Segment)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s (expired)", ErrFragmentNotFound, f.Number())
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
