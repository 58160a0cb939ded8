package store

import (
	"context"
	"encoding/json"
	"os"
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
		keep := time.Duration(st.RetentionHours) * time.Hour
		if keep == 0 {
			keep = zeroRetention
		}
		if err := s.sweepStream(st.Name, s.now().Add(-keep).UnixMilli()); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) sweepStream(name string, cutoffMS int64) error {
	used := map[uint32]bool{}
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		fb, pb := tx.Bucket(fragBucket(name)), tx.Bucket(ptimeBucket(name))
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
			if err := pb.Delete(seqKey(uint64(f.ProducerMS))); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil || removed == 0 {
		return err
	}
	st := s.state(name)
	st.mu.Lock()
	current := st.segID
	if st.seg == nil {
		current = 0
	}
	st.mu.Unlock()
	dir := s.mediaDir(name)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		id, ok := parseSegmentName(e.Name())
		if ok && !used[id] && id != current {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	s.log.Info("retention removed fragments", "stream", name, "fragments", removed)
	return nil
}
