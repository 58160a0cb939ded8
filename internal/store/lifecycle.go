package store

import (
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stream statuses, as DescribeStream shows them.
const (
	StatusCreating = "CREATING"
	StatusActive   = "ACTIVE"
	StatusUpdating = "UPDATING"
	StatusDeleting = "DELETING"
)

// timers owns the pending lifecycle transitions: each runs once on its own
// timer goroutine; stopAll cancels those not started and waits for the rest.
type timers struct {
	mu      sync.Mutex
	pending map[*time.Timer]struct{}
	closed  bool
	wg      sync.WaitGroup
}

func newTimers() *timers { return &timers{pending: map[*time.Timer]struct{}{}} }

func (ts *timers) after(d time.Duration, fn func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return // settled on the next Open
	}
	ts.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		defer ts.wg.Done()
		ts.mu.Lock()
		delete(ts.pending, t)
		closed := ts.closed
		ts.mu.Unlock()
		if !closed {
			fn()
		}
	})
	ts.pending[t] = struct{}{}
}

func (ts *timers) stopAll() {
	ts.mu.Lock()
	ts.closed = true
	for t := range ts.pending {
		if t.Stop() {
			ts.wg.Done()
		}
		delete(ts.pending, t)
	}
	ts.mu.Unlock()
	ts.wg.Wait()
}

// settleLater moves the stream out of a transitional status after the
// configured delay.
func (s *Store) settleLater(id StreamID, from string) {
	s.timers.after(s.opts.TransitionDelay, func() {
		if err := s.settle(id, from); err != nil {
			s.log.Error("stream status change failed", "stream", id.Name(), "from", from, "err", err)
		}
	})
}

// settle ends a transition: CREATING and UPDATING become ACTIVE, DELETING
// removes the stream's record. Nothing happens if the stream has moved on.
func (s *Store) settle(id StreamID, from string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		st, err := getStream(tx, id.Name())
		if err != nil || st.ID != id || st.Status != from {
			return nil
		}
		if from == StatusDeleting {
			return b.Delete([]byte(st.Name))
		}
		st.Status = StatusActive
		return putJSON(b, st.Name, st)
	})
	if err == nil {
		s.log.Debug("stream status settled", "stream", id.Name(), "from", from)
	}
	return err
}

// settleAll finishes the transitions a previous run left pending: the
// delays are short, and a restart is longer than any of them.
func (s *Store) settleAll() error {
	list, _, err := s.ListStreams("", "", 1<<30)
	if err != nil {
		return err
	}
	for _, st := range list {
		switch st.Status {
		case StatusCreating, StatusUpdating, StatusDeleting:
			if err := s.settle(st.ID, st.Status); err != nil {
				return err
			}
			if st.Status == StatusDeleting {
				if err := s.fs.RemoveAll(s.mediaDir(st.ID)); err != nil {
					return fmt.Errorf("removing a deleted stream's media: %w", err)
				}
			}
		}
	}
	return nil
}
