package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// numbered is a fragment whose bytes say which one it is.
func numbered(ms int64, i int) NewFragment {
	nf := frag(ms)
	nf.Body = bytes.Repeat([]byte{byte(i + 1)}, 1000+i)
	return nf
}

func listAll(t *testing.T, s *Store, id StreamID) []Fragment {
	t.Helper()
	var out []Fragment
	if err := s.Scan(id, 0, func(f Fragment) bool { out = append(out, f); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCommittedFragmentsSurviveAPowerCut: the store runs on a file system
// that forgets every byte not fsynced, and every file whose directory was
// not synced, when the power goes. Fragments whose Commit returned (those
// acknowledged PERSISTED) are all there afterwards, byte for byte; the one
// being written when the power went is not, and leaves nothing behind.
// Forcing NoSync, or dropping a directory sync, makes it fail.
func TestCommittedFragmentsSurviveAPowerCut(t *testing.T) {
	dir := t.TempDir()
	ffs := newFaultFS(dir)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := Open(Options{Dir: dir, Now: c.now, FS: ffs, SegmentSize: 4000, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.CreateStream(NewStream{Name: "cut", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	var committed []Fragment
	var bodies [][]byte
	for i := range 7 { // several segments of about three fragments
		nf := numbered(c.now().UnixMilli()+int64(i)*1000, i)
		f := appendOK(t, s, st.ID, nf)
		committed, bodies = append(committed, f), append(bodies, nf.Body)
	}
	// The next fragment is half written when the power goes.
	w, err := s.BeginFragment(st.ID, []byte("header"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{0xee}, 700)); err != nil {
		t.Fatal(err)
	}
	if ffs.syncCount() == 0 {
		t.Fatal("nothing was ever synced")
	}
	// The power goes: the index (bbolt, which syncs itself) stays as
	// committed; the media keeps what was fsynced.
	s.Close() // closes files; syncs nothing more
	if err := ffs.crash(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(Options{Dir: dir, Now: c.now, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := listAll(t, s, st.ID)
	if len(got) != len(committed) {
		t.Fatalf("after the power cut %d fragments are listed, %d were committed", len(got), len(committed))
	}
	for i, f := range got {
		if f.Seq != committed[i].Seq {
			t.Fatalf("fragment %d is %d, want %d", i, f.Seq, committed[i].Seq)
		}
		hdr, body, err := s.ReadFragment(st.ID, f)
		if err != nil || string(hdr) != "header" || !bytes.Equal(body, bodies[i]) {
			t.Fatalf("committed fragment %d after the power cut: %q, %d bytes, %v", i, hdr, len(body), err)
		}
	}
	// Nothing of the half-written fragment is left in any segment.
	var total int64
	entries, _ := os.ReadDir(s.mediaDir(st.ID))
	for _, e := range entries {
		info, _ := e.Info()
		total += info.Size()
	}
	var want int64
	segs := map[uint32]bool{}
	for _, f := range committed {
		want += f.BodyLen
		if !segs[f.Segment] {
			segs[f.Segment] = true
			want += f.HeaderLen
		}
	}
	if total != want {
		t.Fatalf("the segments hold %d bytes; the committed fragments and their headers %d", total, want)
	}
}

// TestTornSegmentOnOpen: a segment cut short in the middle of a fragment
// (a disk that lost acknowledged writes, a file damaged by hand) loses that
// fragment and the ones after it in the index, with a warning; the rest are
// served, and writing goes on. Without the check on open, the index would
// list fragments that cannot be read.
func TestTornSegmentOnOpen(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, dir, c, 1<<20)
	st, err := s.CreateStream(NewStream{Name: "torn", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	var fs []Fragment
	for i := range 5 {
		fs = append(fs, appendOK(t, s, st.ID, numbered(c.now().UnixMilli()+int64(i)*1000, i)))
	}
	s.Close()
	seg := filepath.Join(s.mediaDir(st.ID), segmentName(fs[3].Segment))
	if err := os.Truncate(seg, fs[3].BodyOff+fs[3].BodyLen/2); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, c, 1<<20)
	defer s.Close()
	got := listAll(t, s, st.ID)
	if len(got) != 3 {
		t.Fatalf("%d fragments listed after the cut, want the 3 before it", len(got))
	}
	for i, f := range got {
		if f.Seq != fs[i].Seq {
			t.Fatalf("fragment %d is %d, want %d", i, f.Seq, fs[i].Seq)
		}
		if _, body, err := s.ReadFragment(st.ID, f); err != nil || !bytes.Equal(body, numbered(0, i).Body) {
			t.Fatalf("fragment %d: %d bytes, %v", i, len(body), err)
		}
	}
	if _, ok, _ := s.FirstWithProducerTime(st.ID, fs[4].ProducerMS); ok {
		t.Fatal("a dropped fragment is still in the producer-time index")
	}
	if info, err := os.Stat(seg); err != nil || info.Size() != fs[2].BodyOff+fs[2].BodyLen {
		t.Fatalf("the torn tail was not cut off: %v %v", info.Size(), err)
	}
	f := appendOK(t, s, st.ID, numbered(c.now().UnixMilli()+9000, 9))
	if _, body, err := s.ReadFragment(st.ID, f); err != nil || len(body) != len(numbered(0, 9).Body) {
		t.Fatalf("writing after the repair: %d bytes, %v", len(body), err)
	}
}

// TestDiskFull: when the disk fills up, the fragment being written fails
// with ErrNoSpace and nothing of it is kept; what was stored stays readable;
// once there is space again, fragments are stored again.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	ffs := newFaultFS(dir)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := Open(Options{Dir: dir, Now: c.now, FS: ffs, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.CreateStream(NewStream{Name: "full", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	before := appendOK(t, s, st.ID, numbered(c.now().UnixMilli(), 0))
	ffs.setBudget(500) // less than the next fragment
	_, _, err = s.AppendFragment(st.ID, numbered(c.now().UnixMilli()+1000, 1))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
	}
	if got := listAll(t, s, st.ID); len(got) != 1 || got[0].Seq != before.Seq {
		t.Fatalf("after the failed append: %v", got)
	}
	seg := filepath.Join(s.mediaDir(st.ID), segmentName(before.Segment))
	if info, _ := os.Stat(seg); info.Size() != before.BodyOff+before.BodyLen {
		t.Fatalf("the segment keeps %d bytes of the failed fragment", info.Size()-(before.BodyOff+before.BodyLen))
	}
	if _, body, err := s.ReadFragment(st.ID, before); err != nil || len(body) != len(numbered(0, 0).Body) {
		t.Fatalf("the stored fragment: %d bytes, %v", len(body), err)
	}
	ffs.setBudget(-1) // space is back
	after := appendOK(t, s, st.ID, numbered(c.now().UnixMilli()+1000, 1))
	if _, body, err := s.ReadFragment(st.ID, after); err != nil || !bytes.Equal(body, numbered(0, 1).Body) {
		t.Fatalf("after the disk had space again: %d bytes, %v", len(body), err)
	}
}

// TestNegativeProducerTimestampsSortFirst: the producer-time index orders
// timestamps before 1970 before later ones, and an index written with the
// old key layout is rewritten on open.
func TestNegativeProducerTimestampsSortFirst(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, dir, c, 1<<20)
	st, err := s.CreateStream(NewStream{Name: "neg", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	times := []int64{5000, -3000, 0, -1, 1_800_000_000_000}
	for i, ms := range times {
		nf := numbered(ms, i)
		nf.ServerMS = c.now().UnixMilli()
		appendOK(t, s, st.ID, nf)
	}
	order := func(s *Store, from int64) []int64 {
		var out []int64
		if err := s.ScanByProducerTime(st.ID, from, func(f Fragment) bool { out = append(out, f.ProducerMS); return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []int64{-3000, -1, 0, 5000, 1_800_000_000_000}
	if got := order(s, -1<<62); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("producer-time order %v, want %v", got, want)
	}
	if got := order(s, -2); fmt.Sprint(got) != fmt.Sprint(want[1:]) {
		t.Fatalf("from -2 ms: %v, want %v", got, want[1:])
	}
	if _, ok, _ := s.FirstWithProducerTime(st.ID, -3000); !ok {
		t.Fatal("a negative producer timestamp was not found")
	}

	// Rewrite the index as format 1 wrote it, then open it again.
	err = s.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(ptimeBucket(st.ID))
		var keys, vals [][]byte
		_ = pb.ForEach(func(k, v []byte) error {
			keys, vals = append(keys, append([]byte(nil), k...)), append(vals, append([]byte(nil), v...))
			return nil
		})
		for i, k := range keys {
			if err := pb.Delete(k); err != nil {
				return err
			}
			old := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(ptimeOf(k))), binary.BigEndian.Uint64(k[8:]))
			if err := pb.Put(old, vals[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyFormat)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := order(s, -1<<62); fmt.Sprint(got) == fmt.Sprint(want) {
		t.Fatal("the old key layout sorts negative timestamps first too: the test proves nothing")
	}
	s.Close()
	s = open(t, dir, c, 1<<20)
	defer s.Close()
	if got := order(s, -1<<62); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the upgrade: %v, want %v", got, want)
	}
}

// TestStreamStateIsForgotten: the store keeps in-memory state only for
// streams in use, not for every stream it ever saw.
func TestStreamStateIsForgotten(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, t.TempDir(), c, 1<<20)
	defer s.Close()
	var ids []StreamID
	for i := range 50 {
		st, err := s.CreateStream(NewStream{Name: fmt.Sprintf("s%d", i), RetentionHours: 1})
		if err != nil {
			t.Fatal(err)
		}
		appendOK(t, s, st.ID, frag(c.now().UnixMilli()))
		if i%2 == 0 {
			if err := s.DeleteStream(st.ID, ""); err != nil {
				t.Fatal(err)
			}
		} else {
			ids = append(ids, st.ID)
		}
	}
	if n := s.InUse(); n != 0 {
		t.Fatalf("%d streams in use with nothing using them", n)
	}
	held := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.streams)
	}
	c.add(idleStreamTime)
	s.forgetIdle(idleStreamTime)
	if n := held(); n != 0 {
		t.Fatalf("state of %d streams kept after they were idle for %s", n, idleStreamTime)
	}
	release, ok := s.AcquireIngest(ids[0])
	if !ok || s.InUse() != 1 {
		t.Fatalf("a PutMedia claim: ok %v, %d held", ok, s.InUse())
	}
	if _, ok := s.AcquireIngest(ids[0]); ok {
		t.Fatal("a second PutMedia claim on the same stream")
	}
	c.add(idleStreamTime)
	s.forgetIdle(0)
	if n := held(); n != 1 {
		t.Fatalf("the state of a stream in use was forgotten (%d held)", n)
	}
	release(true)
	if n := s.InUse(); n != 0 {
		t.Fatalf("%d streams in use after the claim ended", n)
	}
	s.forgetIdle(0)
	if n := held(); n != 0 {
		t.Fatalf("%d streams held after the claim ended", n)
	}
	if p, err := s.Producer(ids[0]); err != nil || p.Connected || !p.Ended {
		t.Fatalf("producer state after the claim: %+v %v", p, err)
	}
}

// TestCommitsAreGrouped: fragments of many streams that finish while an
// index commit is under way are committed together, in one transaction.
func TestCommitsAreGrouped(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, t.TempDir(), c, 1<<20)
	defer s.Close()
	const n = 40
	var ids []StreamID
	for i := range n {
		st, err := s.CreateStream(NewStream{Name: fmt.Sprintf("g%d", i), RetentionHours: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	// Hold the index's write lock: every commit queues up behind it.
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	// On a failure, let go of it before Close waits for the committer.
	held := true
	defer func() {
		if held {
			_ = tx.Rollback()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, id := range ids {
		wg.Go(func() {
			_, _, err := s.AppendFragment(id, frag(c.now().UnixMilli()))
			errs <- err
		})
	}
	// Every fragment is queued, or in the commit blocked behind the lock
	// (the first ones, taken together).
	waitFor(t, func() bool { return s.commits.requests.Load() == n })
	held = false
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if commits := s.commits.count(); commits > 2 {
		t.Fatalf("%d fragments of %d streams took %d index commits", n, n, commits)
	}
	for _, id := range ids {
		if got := listAll(t, s, id); len(got) != 1 {
			t.Fatalf("%s: %d fragments", id, len(got))
		}
	}
}

// waitFor waits for cond, failing after ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
