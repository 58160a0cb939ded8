package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// zeroRetention is how long a stream with DataRetentionInHours 0 keeps
// fragments: long enough for live GetMedia readers, as the service does.
const zeroRetention = 5 * time.Minute

// Sweep removes fragments older than their stream's retention, and the
// segment files no fragment refers to any more.
func (s *Store) Sweep(ctx context.Context) error {
	list, _, err := s.ListStreams("", "", 1<<30)
	if err != nil {
		return err
	}
	for _, st := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.sweepStream(st.ID, s.RetentionCutoff(st)); err != nil {
			return err
		}
	}
	return nil
}

// RetentionCutoff is the server time (Unix ms) before which the stream's
// fragments have expired: the API must not serve them even before the
// sweep removes them.
func (s *Store) RetentionCutoff(st Stream) int64 {
	keep := time.Duration(st.RetentionHours) * time.Hour
	if keep == 0 {
		keep = zeroRetention
	}
	return s.now().Add(-keep).UnixMilli()
}

func (s *Store) sweepStream(id StreamID, cutoffMS int64) error {
	used := map[uint32]bool{}
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		fb, pb := tx.Bucket(fragBucket(id)), tx.Bucket(ptimeBucket(id))
		if fb == nil || pb == nil {
			return nil
		}
		c := fb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			if f.ServerMS >= cutoffMS {
				used[f.Segment] = true
				continue
			}
			if err := c.Delete(); err != nil {
				return err
			}
			if err := pb.Delete(ptimeKey(f.ProducerMS, f.Seq)); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil || removed == 0 {
		return err
	}
	st := s.acquire(id)
	defer s.release(st)
	st.mu.Lock()
	defer st.mu.Unlock() // no segment is created meanwhile
	current := st.segID
	if st.seg == nil {
		current = 0
	}
	dir := s.mediaDir(id)
	entries, _ := s.fs.ReadDir(dir)
	for _, e := range entries {
		id, ok := parseSegmentName(e.Name())
		if ok && !used[id] && id != current {
			_ = s.fs.Remove(filepath.Join(dir, e.Name()))
		}
	}
	s.log.Info("retention removed fragments", "stream", id.Name(), "fragments", removed)
	return nil
}
