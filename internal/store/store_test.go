package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, dir string, c *clock, segment int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, Now: c.now, SegmentSize: segment, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func frag(ms int64) NewFragment {
	return NewFragment{Header: []byte("header"), Body: make([]byte, 1000), ProducerMS: ms, ServerMS: ms, DurationMS: 1000, Timecode: ms}
}

func TestAppendReopenAndDedupe(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, dir, c, 1<<20)
	a, err := s.CreateStream(NewStream{Name: "a", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(NewStream{Name: "a"}); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("duplicate: %v", err)
	}
	var seqs []uint64
	for i := range 5 {
		f, dup, err := s.AppendFragment(a.ID, frag(c.now().UnixMilli()+int64(i)*1000))
		if err != nil || dup {
			t.Fatalf("append %d: %v %v", i, dup, err)
		}
		seqs = append(seqs, f.Seq)
	}
	// The producer sends fragment 2 again, byte for byte: stored once.
	f, dup, err := s.AppendFragment(a.ID, frag(c.now().UnixMilli()+2000))
	if err != nil || !dup || f.Seq != seqs[2] {
		t.Fatalf("resent fragment: seq %d dup %v err %v", f.Seq, dup, err)
	}
	s.Close()

	s = open(t, dir, c, 1<<20)
	defer s.Close()
	var got []uint64
	if err := s.Scan(a.ID, 0, func(f Fragment) bool { got = append(got, f.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("after reopening: %v", got)
	}
	hdr, body, err := s.ReadFragment(a.ID, mustFragment(t, s, a.ID, got[4]))
	if err != nil || string(hdr) != "header" || len(body) != 1000 {
		t.Fatalf("read back: %q %d %v", hdr, len(body), err)
	}
	// New fragments go to a new segment and get new numbers.
	f, _, err = s.AppendFragment(a.ID, frag(c.now().UnixMilli()+9000))
	if err != nil || f.Seq <= seqs[4] || f.Segment == 1 {
		t.Fatalf("after reopening: %+v %v", f, err)
	}
	if n, err := ParseFragmentNumber(f.Number()); err != nil || n != f.Seq || len(f.Number()) != 47 {
		t.Fatalf("fragment number %q: %d %v", f.Number(), n, err)
	}
}

func mustFragment(t *testing.T, s *Store, id StreamID, seq uint64) Fragment {
	t.Helper()
	f, err := s.Fragment(id, seq)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRetentionRemovesOldFragmentsAndSegments(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, dir, c, 3000) // about two fragments per segment
	defer s.Close()
	r, err := s.CreateStream(NewStream{Name: "r", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if _, _, err := s.AppendFragment(r.ID, frag(c.now().UnixMilli())); err != nil {
			t.Fatal(err)
		}
		c.add(20 * time.Minute)
	}
	segments := func() int {
		entries, _ := os.ReadDir(filepath.Join(dir, "media", "s-"+string(r.ID)))
		return len(entries)
	}
	before := segments()
	// Now 2 h after the first fragment: those older than 1 h go.
	if err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	var left []int64
	_ = s.Scan(r.ID, 0, func(f Fragment) bool { left = append(left, f.ServerMS); return true })
	cutoff := c.now().Add(-time.Hour).UnixMilli()
	if len(left) != 3 {
		t.Fatalf("%d fragments left, want 3", len(left))
	}
	for _, ms := range left {
		if ms < cutoff {
			t.Fatalf("a fragment older than the retention survived")
		}
	}
	if after := segments(); after >= before {
		t.Fatalf("segments %d before the sweep, %d after", before, after)
	}
	// What is left still reads.
	var first Fragment
	_ = s.Scan(r.ID, 0, func(f Fragment) bool { first = f; return false })
	if _, _, err := s.ReadFragment(r.ID, first); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteStreamWakesWaiters(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, t.TempDir(), c, 1<<20)
	defer s.Close()
	d, err := s.CreateStream(NewStream{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitAfter(context.Background(), d.ID, 0) }()
	// Delete only once it waits: a waiter that came late would find the
	// stream gone without the wake-up being needed.
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.streams[d.ID]
		return st != nil && st.waiting.Load() == 1
	})
	if err := s.DeleteStream(d.ID, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter was not woken by the stream's deletion")
	}
	if _, err := s.Stream("d"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("deleted stream: %v", err)
	}
	if _, _, err := s.AppendFragment(d.ID, frag(1)); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("append to a deleted stream: %v", err)
	}
}
