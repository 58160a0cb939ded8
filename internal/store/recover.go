package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

func segmentName(id uint32) string { return fmt.Sprintf("%08d.mkv", id) }

func parseSegmentName(n string) (uint32, bool) {
	base, ok := strings.CutSuffix(n, ".mkv")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(base, 10, 32)
	return uint32(v), err == nil
}

// recoverSegments checks, when the store opens, that the segment files
// hold the fragments the index says they do. Segments are fsynced before
// the index commits, so after a power cut on a disk that keeps its promises
// they always do. A segment cut short anyway (a disk or file system that
// lost writes it had acknowledged, a file truncated or removed by hand)
// loses the fragments that no longer fit, with a warning, and the rest are
// served as before. What was being written and never acknowledged (the
// newest segment's tail, segment files no fragment refers to) is removed.
//
// Only the newest fragments can be torn: fragments are appended in order,
// and a stream's segments are written one after another. So the check walks
// each stream back from its newest fragment and stops at the first that is
// whole.
func (s *Store) recoverSegments() error {
	list, _, err := s.ListStreams("", "", 1<<30)
	if err != nil {
		return err
	}
	for _, st := range list {
		if err := s.recoverStream(st.ID); err != nil {
			return fmt.Errorf("stream %s: %w", st.Name, err)
		}
	}
	return nil
}

func (s *Store) recoverStream(id StreamID) error {
	dir := s.mediaDir(id)
	entries, _ := s.fs.ReadDir(dir)
	sizes := map[uint32]int64{}
	for _, e := range entries {
		seg, ok := parseSegmentName(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		sizes[seg] = info.Size()
	}
	type drop struct {
		f   Fragment
		why string
	}
	var drops []drop
	var last *Fragment // the newest whole fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(fragBucket(id))
		if fb == nil {
			return nil
		}
		c := fb.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			size, ok := sizes[f.Segment]
			end := max(f.BodyOff+f.BodyLen, f.HeaderOff+f.HeaderLen)
			switch {
			case !ok:
				drops = append(drops, drop{f, "its segment file " + segmentName(f.Segment) + " is missing"})
			case end > size:
				drops = append(drops, drop{f, fmt.Sprintf("its segment file %s ends at byte %d, the fragment at byte %d", segmentName(f.Segment), size, end)})
			default:
				last = &f
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(drops) > 0 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			fb, pb := tx.Bucket(fragBucket(id)), tx.Bucket(ptimeBucket(id))
			for _, d := range drops {
				if err := fb.Delete(seqKey(d.f.Seq)); err != nil {
					return err
				}
				if err := pb.Delete(ptimeKey(d.f.ProducerMS, d.f.Seq)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range drops {
			s.log.Warn("a stored fragment is no longer on the disk and is dropped from the index; the others are served",
				"stream", id.Name(), "fragment", d.f.Number(), "why", d.why)
		}
	}
	for seg, size := range sizes {
		path := filepath.Join(dir, segmentName(seg))
		switch {
		case last == nil || seg > last.Segment:
			// Written after the newest whole fragment: nothing refers to it.
			if err := s.fs.Remove(path); err == nil {
				s.log.Info("removed a segment no stored fragment refers to", "stream", id.Name(), "segment", segmentName(seg), "bytes", size)
			}
		case seg == last.Segment:
			end := max(last.BodyOff+last.BodyLen, last.HeaderOff+last.HeaderLen)
			if size <= end {
				continue
			}
			f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				continue
			}
			if err := f.Truncate(end); err == nil {
				s.log.Info("cut the unacknowledged tail off a segment", "stream", id.Name(), "segment", segmentName(seg), "bytes", size-end)
			}
			f.Close()
		}
	}
	return nil
}
