package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Recent returns the stream's newest fragments, at most n, oldest first,
// without reading the rest of the index (the web page asks every few
// seconds).
func (s *Store) Recent(id StreamID, n int) ([]Fragment, error) {
	var out []Fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(id))
		if fb == nil {
			return fmt.Errorf("%w: %s", ErrStreamNotFound, id)
		}
		c := fb.Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}
