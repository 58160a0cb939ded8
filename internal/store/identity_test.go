package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func appendOK(t *testing.T, s *Store, id StreamID, nf NewFragment) Fragment {
	t.Helper()
	f, dup, err := s.AppendFragment(id, nf)
	if err != nil || dup {
		t.Fatalf("append: dup %v, %v", dup, err)
	}
	return f
}

// TestEqualProducerTimestampsAreDifferentFragments: fragments that share a
// producer timestamp but not their bytes each get their own number and are
// all kept; only a byte-identical resend is stored once. The producer
// timestamp index finds the first-ingested one in one lookup.
func TestEqualProducerTimestampsAreDifferentFragments(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, t.TempDir(), c, 1<<20)
	defer s.Close()
	st, err := s.CreateStream(NewStream{Name: "p", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	ts := c.now().UnixMilli()
	a := frag(ts)
	b := frag(ts)
	b.Body = append([]byte(nil), a.Body...)
	b.Body[500] = 1 // another picture, same timestamp
	first := appendOK(t, s, st.ID, a)
	second := appendOK(t, s, st.ID, b)
	later := appendOK(t, s, st.ID, frag(ts+1000))
	if second.Seq <= first.Seq {
		t.Fatalf("second fragment numbered %d after %d", second.Seq, first.Seq)
	}
	again, dup, err := s.AppendFragment(st.ID, b)
	if err != nil || !dup || again.Seq != second.Seq {
		t.Fatalf("byte-identical resend: seq %d dup %v err %v, want the stored %d", again.Seq, dup, err, second.Seq)
	}
	seq, ok, err := s.FirstWithProducerTime(st.ID, ts)
	if err != nil || !ok || seq != first.Seq {
		t.Fatalf("first with producer time %d: %d %v %v, want %d", ts, seq, ok, err, first.Seq)
	}
	if _, ok, _ := s.FirstWithProducerTime(st.ID, ts+1); ok {
		t.Fatal("a producer time no fragment has was found")
	}
	var order []uint64
	_ = s.ScanByProducerTime(st.ID, ts, func(f Fragment) bool { order = append(order, f.Seq); return true })
	if len(order) != 3 || order[0] != first.Seq || order[1] != second.Seq || order[2] != later.Seq {
		t.Fatalf("by producer time: %v", order)
	}
	_, body, err := s.ReadFragment(st.ID, second)
	if err != nil || body[500] != 1 {
		t.Fatalf("the second fragment's own bytes were not kept: %v", err)
	}
}

// TestRecreatedStreamStartsEmpty: a stream deleted and created again under
// its name has a new identity and ARN and nothing of the old one; the old
// identity's sessions are told it is gone.
func TestRecreatedStreamStartsEmpty(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	dir := t.TempDir()
	s := open(t, dir, c, 1<<20)
	defer s.Close()
	old, err := s.CreateStream(NewStream{Name: "x", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	appendOK(t, s, old.ID, frag(c.now().UnixMilli()))
	release, ok := s.AcquireIngest(old.ID) // a PutMedia session holds it
	if !ok {
		t.Fatal("no ingest claim")
	}
	defer release(false)
	gone := s.Gone(old.ID)
	if err := s.DeleteStream(old.ID, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	default:
		t.Fatal("Gone not closed by the deletion")
	}
	// Same name, same millisecond: still a new identity.
	fresh, err := s.CreateStream(NewStream{Name: "x", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.ID == old.ID || fresh.ARN == old.ARN {
		t.Fatalf("re-created stream kept the old identity: %s %s", fresh.ID, fresh.ARN)
	}
	if n, err := s.Latest(fresh.ID); err != nil || n != 0 {
		t.Fatalf("re-created stream has fragments: %d %v", n, err)
	}
	if _, err := s.Latest(old.ID); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("old identity still readable: %v", err)
	}
	if _, _, err := s.AppendFragment(old.ID, frag(c.now().UnixMilli()+1000)); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("append to the old identity: %v", err)
	}
	if _, err := s.StreamByARN(old.ARN); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("old ARN still resolves: %v", err)
	}
	if _, err := os.Stat(s.mediaDir(old.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old media left behind: %v", err)
	}
	releaseFresh, ok := s.AcquireIngest(fresh.ID)
	if !ok {
		t.Fatal("no ingest claim on the new stream")
	}
	defer releaseFresh(false)
	select {
	case <-s.Gone(fresh.ID):
		t.Fatal("the new stream is reported gone")
	default:
	}
}

func waitStatus(t *testing.T, s *Store, name, want string) Stream {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.Stream(name)
		if want == "" && errors.Is(err, ErrStreamNotFound) {
			return st
		}
		if err == nil && st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: status %q (%v), want %q", name, st.Status, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLifecycle: streams are CREATING, UPDATING and DELETING for the
// transition delay, refuse changes meanwhile, and a restart settles what a
// previous run left pending.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, TransitionDelay: 50 * time.Millisecond, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.CreateStream(NewStream{Name: "l"})
	if err != nil || st.Status != StatusCreating {
		t.Fatalf("created: %q %v", st.Status, err)
	}
	if _, err := s.UpdateStream(st.ID, "", func(*Stream) error { return nil }); !errors.Is(err, ErrNotActive) {
		t.Fatalf("update while CREATING: %v", err)
	}
	if err := s.DeleteStream(st.ID, ""); !errors.Is(err, ErrNotActive) {
		t.Fatalf("delete while CREATING: %v", err)
	}
	waitStatus(t, s, "l", StatusActive)
	up, err := s.UpdateStream(st.ID, "", func(x *Stream) error { x.RetentionHours = 2; return nil })
	if err != nil || up.Status != StatusUpdating || up.RetentionHours != 2 {
		t.Fatalf("update: %+v %v", up, err)
	}
	if _, err := s.UpdateStream(st.ID, "", func(*Stream) error { return nil }); !errors.Is(err, ErrNotActive) {
		t.Fatalf("second update while UPDATING: %v", err)
	}
	waitStatus(t, s, "l", StatusActive)
	if err := s.DeleteStream(st.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := waitStatus(t, s, "l", StatusDeleting); got.ID != st.ID {
		t.Fatalf("deleting: %+v", got)
	}
	if _, err := s.CreateStream(NewStream{Name: "l"}); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("create while DELETING: %v", err)
	}
	waitStatus(t, s, "l", "")

	// Pending transitions survive a restart and settle on Open.
	pending, err := s.CreateStream(NewStream{Name: "pending"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(Options{Dir: dir, TransitionDelay: time.Hour, RetentionSweep: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Stream("pending"); err != nil || got.Status != StatusActive || got.ID != pending.ID {
		t.Fatalf("after a restart: %+v %v", got, err)
	}
}

// TestSessionEndMark: the clean end of a PutMedia session is recorded with
// the stream's newest fragment, survives a restart, and is cleared by the
// next session; a session that breaks off records nothing.
func TestSessionEndMark(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	dir := t.TempDir()
	s := open(t, dir, c, 1<<20)
	st, err := s.CreateStream(NewStream{Name: "e", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	release, ok := s.AcquireIngest(st.ID)
	if !ok {
		t.Fatal("first connection refused")
	}
	if _, ok := s.AcquireIngest(st.ID); ok {
		t.Fatal("second connection accepted")
	}
	last := appendOK(t, s, st.ID, frag(c.now().UnixMilli()))
	if p, _ := s.Producer(st.ID); !p.Connected || p.Ended {
		t.Fatalf("while connected: %+v", p)
	}
	release(true)
	s.Close()
	s = open(t, dir, c, 1<<20)
	defer s.Close()
	if p, err := s.Producer(st.ID); err != nil || p.Connected || !p.Ended || p.EndSeq != last.Seq || p.EndedMS != c.now().UnixMilli() {
		t.Fatalf("after a clean end and a restart: %+v %v (last fragment %d)", p, err, last.Seq)
	}
	release, ok = s.AcquireIngest(st.ID)
	if !ok {
		t.Fatal("connection refused after the first one ended")
	}
	if p, _ := s.Producer(st.ID); !p.Connected || p.Ended {
		t.Fatalf("a new session did not clear the end: %+v", p)
	}
	release(false)
	if p, _ := s.Producer(st.ID); p.Connected || p.Ended {
		t.Fatalf("after a session broke off: %+v", p)
	}
}

// TestUpgradeFromNameKeyedIndex opens an index written before streams had
// identities (keyed by name, one producer-timestamp entry per timestamp):
// the stream, its fragments and its media are all still there.
func TestUpgradeFromNameKeyedIndex(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "media", "s-old"), 0o755); err != nil {
		t.Fatal(err)
	}
	media := append([]byte("header"), make([]byte, 1000)...)
	if err := os.WriteFile(filepath.Join(dir, "media", "s-old", segmentName(1)), media, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	const ms = 1_800_000_000_000
	err = db.Update(func(tx *bolt.Tx) error {
		streams, _ := tx.CreateBucket(bucketStreams)
		meta, _ := tx.CreateBucket(bucketMeta)
		fb, _ := tx.CreateBucket([]byte("f:old"))
		pb, _ := tx.CreateBucket([]byte("p:old"))
		rec, _ := json.Marshal(map[string]any{"name": "old", "arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/old/1", "version": "v", "status": "ACTIVE", "retentionHours": 1})
		_ = streams.Put([]byte("old"), rec)
		f, _ := json.Marshal(Fragment{Seq: 7, ProducerMS: ms, ServerMS: ms, DurationMS: 1000, Segment: 1, HeaderLen: 6, BodyOff: 6, BodyLen: 1000})
		_ = fb.Put(seqKey(7), f)
		_ = pb.Put(binary.BigEndian.AppendUint64(nil, ms), seqKey(7))
		return meta.SetSequence(7)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.UnixMilli(ms)}
	s := open(t, dir, c, 1<<20)
	defer s.Close()
	st, err := s.Stream("old")
	if err != nil || st.ID != "old" {
		t.Fatalf("upgraded stream: %+v %v", st, err)
	}
	f := mustFragment(t, s, st.ID, 7)
	if _, body, err := s.ReadFragment(st.ID, f); err != nil || len(body) != 1000 {
		t.Fatalf("old media: %v", err)
	}
	if seq, ok, err := s.FirstWithProducerTime(st.ID, ms); err != nil || !ok || seq != 7 {
		t.Fatalf("old producer-time entry: %d %v %v", seq, ok, err)
	}
	// New fragments go on numbering after the old ones, and the resend of
	// the old fragment is recognised.
	if g := appendOK(t, s, st.ID, frag(ms+1000)); g.Seq != 8 {
		t.Fatalf("next number %d, want 8", g.Seq)
	}
	nf := NewFragment{Header: []byte("header"), Body: make([]byte, 1000), ProducerMS: ms, ServerMS: ms, DurationMS: 1000}
	if g, dup, err := s.AppendFragment(st.ID, nf); err != nil || !dup || g.Seq != 7 {
		t.Fatalf("resend of an old fragment: %d %v %v", g.Seq, dup, err)
	}
}
