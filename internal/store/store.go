// Package store keeps streams and their fragments for the local server: a
// bbolt index of streams and fragments, and the media bytes in append-only
// segment files. A fragment is written to its segment and fsynced before its
// index entry commits, so after a crash the index refers only to bytes that
// reached the disk, and nothing half-written is ever served.
//
// A stream's data is keyed by its identity (StreamID), not its name: a stream
// deleted and created again under the same name shares nothing with the old
// one.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors callers map to API errors.
var (
	ErrStreamNotFound   = errors.New("stream not found")
	ErrStreamExists     = errors.New("stream already exists")
	ErrVersionMismatch  = errors.New("stream version does not match")
	ErrFragmentNotFound = errors.New("fragment not found")
	ErrClosed           = errors.New("store closed")
	// ErrNotActive: the stream is being created, updated or deleted and
	// cannot be changed now.
	ErrNotActive = errors.New("stream is not active")
)

var (
	bucketStreams = []byte("streams")
	bucketMeta    = []byte("meta")
)

// Options configure a Store.
type Options struct {
	// Dir holds the index and the media.
	Dir    string
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// Region and Account go into stream ARNs.
	Region  string
	Account string
	// SegmentSize is the size at which a stream's segment file is rotated;
	// 64 MiB when zero.
	SegmentSize int64
	// RetentionSweep is how often expired fragments are removed; one
	// minute when zero.
	RetentionSweep time.Duration
	// NoSync skips fsync: for fuzzing and throwaway stores only, never
	// for data anyone wants to keep.
	NoSync bool
	// TransitionDelay is how long a stream stays CREATING, UPDATING or
	// DELETING before it settles, as the service's streams do; zero
	// settles at once.
	TransitionDelay time.Duration
}

// Store is the server's durable state. It is safe for concurrent use.
type Store struct {
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	streams map[StreamID]*streamState // per-stream writer and notifier, kept after deletion
	lastMS  int64                     // the newest stream creation time handed out

	// seq hands out fragment numbers; the index's meta sequence keeps up
	// with every committed one, so numbers never repeat across restarts.
	seq atomic.Uint64

	timers *timers // pending lifecycle transitions

	stop chan struct{}
	done chan struct{}
}

// Open opens (or creates) the store in opts.Dir and starts its retention
// sweeper. Close stops it.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.RetentionSweep == 0 {
		opts.RetentionSweep = time.Minute
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Account == "" {
		opts.Account = "000000000000"
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "media"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	db, err := bolt.Open(filepath.Join(opts.Dir, "index.db"), 0o644, &bolt.Options{Timeout: 2 * time.Second, NoSync: opts.NoSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("the data directory %s is in use by another kvsgo serve", opts.Dir)
		}
		return nil, fmt.Errorf("opening the index: %w", err)
	}
	// Commits of fragments from several streams are grouped, waiting at
	// most this long for one another: it adds to each PERSISTED ack.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketStreams, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing the index: %w", err)
	}
	s := &Store{opts: opts, db: db, log: opts.Logger, now: opts.Now, timers: newTimers(),
		streams: map[StreamID]*streamState{}, stop: make(chan struct{}), done: make(chan struct{})}
	_ = db.View(func(tx *bolt.Tx) error {
		s.seq.Store(tx.Bucket(bucketMeta).Sequence())
		return nil
	})
	if err := s.upgrade(); err != nil {
		db.Close()
		return nil, fmt.Errorf("upgrading the index: %w", err)
	}
	if err := s.settleAll(); err != nil {
		db.Close()
		return nil, fmt.Errorf("finishing stream transitions: %w", err)
	}
	go s.sweepLoop()
	return s, nil
}

// Close stops the sweeper, closes segment files and the index.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	s.timers.stopAll()
	s.mu.Lock()
	for _, st := range s.streams {
		st.closeSegment()
		st.wake()
	}
	s.mu.Unlock()
	return s.db.Close()
}

func (s *Store) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.RetentionSweep)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Sweep(context.Background()); err != nil {
				s.log.Error("retention sweep failed", "err", err)
			}
		}
	}
}

// ReserveFragment hands out the sequence number of a fragment about to
// arrive, so that its acknowledgements can name it before it is stored.
func (s *Store) ReserveFragment() uint64 { return s.seq.Add(1) }

func (s *Store) state(id StreamID) *streamState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[id]
	if !ok {
		st = newStreamState(id)
		s.streams[id] = st
	}
	return st
}

func (s *Store) mediaDir(id StreamID) string {
	// Stream names are [a-zA-Z0-9_.-]+ and IDs add "@<ms>"; the prefix
	// keeps "." and ".." safe.
	return filepath.Join(s.opts.Dir, "media", "s-"+string(id))
}
