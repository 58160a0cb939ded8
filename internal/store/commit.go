package store

import (
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// commitReq is one fragment's index entry waiting to be committed.
type commitReq struct {
	id   StreamID
	put  func(tx *bolt.Tx) error // checks before it writes: an error leaves tx untouched
	err  error
	done chan struct{}
}

// committer groups index commits across streams: fragments whose segments
// have been fsynced wait here, and one transaction (two fdatasyncs of the
// index) records all that arrived since the last one. It commits at once
// when it has been idle, and at most every interval under load, which
// bounds the commit rate whatever the number of streams.
type committer struct {
	db       *bolt.DB
	interval time.Duration
	wake     func(StreamID) // tells a stream's live readers

	commits  atomic.Int64 // transactions so far
	requests atomic.Int64 // fragments handed to commit so far

	mu     sync.Mutex
	queue  []*commitReq
	closed bool
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

func newCommitter(db *bolt.DB, interval time.Duration, wake func(StreamID)) *committer {
	c := &committer{db: db, interval: interval, wake: wake,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// commit records put in the next group and waits for it to be durable.
func (c *committer) commit(id StreamID, put func(tx *bolt.Tx) error) error {
	r := &commitReq{id: id, put: put, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, r)
	c.requests.Add(1)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	<-r.done
	return r.err
}

func (c *committer) loop() {
	defer close(c.done)
	var last time.Time
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			c.fail(ErrClosed)
			return
		}
		if wait := c.interval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.stop:
				t.Stop()
				c.fail(ErrClosed)
				return
			}
		}
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		last = time.Now()
		c.commits.Add(1)
		err := c.db.Update(func(tx *bolt.Tx) error {
			for _, r := range batch {
				r.err = r.put(tx)
			}
			return nil
		})
		for _, r := range batch {
			if err != nil {
				r.err = diskErr("recording the fragment in the index", err)
			}
			close(r.done)
			if r.err == nil {
				c.wake(r.id)
			}
		}
	}
}

// fail answers everything still queued.
func (c *committer) fail(err error) {
	c.mu.Lock()
	c.closed = true
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// count returns how many index commits grouped fragments so far.
func (c *committer) count() int64 { return c.commits.Load() }

func (c *committer) close() {
	close(c.stop)
	<-c.done
}
