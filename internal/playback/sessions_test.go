package playback

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/kvsgo/kvsgo/internal/store"
)

// fakeStore is an in-memory Source: fragments of one stream, in ingest
// order, with duplicates allowed (ingest no longer drops them).
type fakeStore struct {
	mu      sync.Mutex
	frags   []store.Fragment
	headers map[uint32][]byte // by Segment
	body    []byte
	changed chan struct{}
	waiting int
}

// waiters is how many WaitAfter calls are blocked.
func (s *fakeStore) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func newFakeStore(t testing.TB) *fakeStore {
	src := encode(t, x264Baseline, false)
	header, bodies := kvsFragments(t, src, epoch)
	return &fakeStore{headers: map[uint32][]byte{1: header}, body: bodies[0], changed: make(chan struct{})}
}

// add appends a fragment with a producer timestamp (ms after epoch) and
// a duration; segment picks its stream header.
func (s *fakeStore) add(producerMS, durMS int64, segment uint32) store.Fragment {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := store.Fragment{Seq: uint64(len(s.frags)+1) * 2, ProducerMS: epoch.UnixMilli() + producerMS,
		ServerMS: epoch.UnixMilli() + producerMS + 100, DurationMS: durMS, Segment: segment, BodyLen: 1000}
	s.frags = append(s.frags, f)
	close(s.changed)
	s.changed = make(chan struct{})
	return f
}

func (s *fakeStore) Scan(_ store.StreamID, after uint64, fn func(store.Fragment) bool) error {
	s.mu.Lock()
	frags := append([]store.Fragment(nil), s.frags...)
	s.mu.Unlock()
	for _, f := range frags {
		if f.Seq > after && !fn(f) {
			break
		}
	}
	return nil
}

func (s *fakeStore) Latest(store.StreamID) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.frags) == 0 {
		return 0, nil
	}
	return s.frags[len(s.frags)-1].Seq, nil
}

func (s *fakeStore) Fragment(_ store.StreamID, seq uint64) (store.Fragment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frags {
		if f.Seq == seq {
			return f, nil
		}
	}
	return store.Fragment{}, store.ErrFragmentNotFound
}

func (s *fakeStore) ReadFragment(_ store.StreamID, f store.Fragment) ([]byte, []byte, error) {
	return s.headers[f.Segment], s.body, nil
}

func (s *fakeStore) WaitAfter(ctx context.Context, name store.StreamID, after uint64) error {
	s.mu.Lock()
	ch := s.changed
	s.mu.Unlock()
	if latest, _ := s.Latest(name); latest > after {
		return nil
	}
	s.mu.Lock()
	s.waiting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newSessions(t testing.TB, src Source, c *clock) *Sessions {
	t.Helper()
	signer, err := NewSigner(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &Sessions{Source: src, Signer: signer, Now: c.now}
}

// open prepares a session and returns it with its token's ID.
func open(t testing.TB, m *Sessions, sess Session) (Session, string) {
	t.Helper()
	sess.Kind, sess.Stream = KindHLS, "s"
	sess.Created, sess.Expires = m.now(), m.now().Add(time.Hour)
	if err := m.Prepare(&sess); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	got, id, err := m.Signer.Parse(m.Signer.Token(sess), m.now())
	if err != nil {
		t.Fatal(err)
	}
	return got, id
}

func starts(w Window) []int64 {
	var out []int64
	for _, e := range w.Entries {
		out = append(out, e.Fragment.ProducerMS-epoch.UnixMilli())
	}
	return out
}

// TestPlaylistDropsDuplicatesKeepsFirst: a fragment sent again with the
// same producer timestamp (a producer's resend after a reconnect) is
// played once, the first ingested; one older than what is shown is left
// out, as the service does.
func TestPlaylistDropsDuplicatesKeepsFirst(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(10 * time.Second)}
	first := fs.add(0, 1000, 1)
	second := fs.add(1000, 1000, 1)
	fs.add(1000, 1000, 1) // the resend of the second
	fs.add(3000, 1000, 1)
	fs.add(2000, 1000, 1) // late and older than the newest shown
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityNever})
	w, err := m.Window(sess, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := starts(w); len(got) != 3 || got[0] != 0 || got[1] != 1000 || got[2] != 3000 {
		t.Fatalf("playlist starts %v, want [0 1000 3000]", got)
	}
	if w.Entries[0].Fragment.Seq != first.Seq || w.Entries[1].Fragment.Seq != second.Seq {
		t.Fatalf("the duplicate kept is %d, want the first ingested %d", w.Entries[1].Fragment.Seq, second.Seq)
	}
	for i, e := range w.Entries {
		if e.MSN != uint64(i) {
			t.Fatalf("entry %d has media sequence number %d", i, e.MSN)
		}
	}
	if !w.Ended {
		t.Fatal("an ON_DEMAND playlist must end")
	}
	clip, err := m.ClipFragments("s", true, epoch, epoch.Add(time.Minute))
	if err != nil || len(clip) != 3 || clip[1].Seq != second.Seq {
		t.Fatalf("clip fragments %v %v", clip, err)
	}
}

// TestLiveWindowNumbering: a LIVE playlist slides over the newest
// fragments; media and discontinuity sequence numbers count on from the
// session's first fragment and come out the same for a server that has
// forgotten the session (a restart).
func TestLiveWindowNumbering(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(5 * time.Second)}
	for i := range 5 {
		fs.add(int64(i)*1000, 1000, 1)
	}
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeLive, MaxResults: 3, Discontinuity: DiscontinuityAlways})
	w, _ := m.Window(sess, id)
	if got := starts(w); len(got) != 3 || got[0] != 2000 || w.Entries[0].MSN != 0 {
		t.Fatalf("first live window %v (MSN %d), want the newest 3 from MSN 0", got, w.Entries[0].MSN)
	}
	for i := 5; i < 9; i++ {
		fs.add(int64(i)*1000, 1000, 1)
		fs.add(int64(i)*1000, 1000, 1) // each sent twice
	}
	w, _ = m.Window(sess, id)
	if got := starts(w); len(got) != 3 || got[2] != 8000 || w.Entries[0].MSN != 4 || w.Entries[2].MSN != 6 {
		t.Fatalf("live window %v from MSN %d, want 6000..8000 from MSN 4", got, w.Entries[0].MSN)
	}
	restarted := newSessions(t, fs, c)
	w2, err := restarted.Window(sess, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w.Entries {
		a, b := w.Entries[i], w2.Entries[i]
		if a.MSN != b.MSN || a.Fragment.Seq != b.Fragment.Seq || a.DSN != b.DSN {
			t.Fatalf("after a restart entry %d is %+v, before %+v", i, b, a)
		}
	}
	b, err := MediaPlaylist(sess, "T", w, 1)
	if err != nil {
		t.Fatal(err)
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		t.Fatalf("gohlslib cannot read the playlist back: %v\n%s", err, b)
	}
	if pl.MediaSequence != 4 || pl.DiscontinuitySequence == nil || *pl.DiscontinuitySequence != 3 || pl.Endlist ||
		pl.ServerControl == nil || !pl.ServerControl.CanBlockReload || !pl.Segments[0].Discontinuity {
		t.Fatalf("live playlist header wrong:\n%s", b)
	}
}

// TestBlockingReloadWakesOnNewFragment: a player asking for the next
// segment gets the playlist as soon as the fragment is stored.
func TestBlockingReloadWakesOnNewFragment(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(3 * time.Second)}
	fs.add(0, 1000, 1)
	fs.add(1000, 1000, 1)
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeLive, MaxResults: 5, Discontinuity: DiscontinuityNever})
	type result struct {
		w   Window
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := m.WaitWindow(context.Background(), sess, id, 2, time.Minute)
		done <- result{w, err}
	}()
	fs.add(2000, 1000, 1)
	r := <-done
	if r.err != nil || len(r.w.Entries) != 3 || r.w.Entries[2].MSN != 2 {
		t.Fatalf("blocking reload returned %v entries, err %v; want segment 2 in it", starts(r.w), r.err)
	}
}

// TestLiveReplayClock: LIVE_REPLAY adds a fragment when the one before it
// has played, and ends with the range.
func TestLiveReplayClock(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Hour)}
	for i := range 4 {
		fs.add(int64(i)*1000, 1000, 1)
	}
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeLiveReplay, ProducerTime: true, Start: epoch, End: epoch.Add(3 * time.Second),
		MaxResults: 5, Discontinuity: DiscontinuityNever})
	for _, step := range []struct {
		after time.Duration
		n     int
		ended bool
	}{{0, 1, false}, {1500 * time.Millisecond, 2, false}, {time.Second, 3, false}, {time.Second, 4, true}} {
		c.advance(step.after)
		w, err := m.Window(sess, id)
		if err != nil || len(w.Entries) != step.n || w.Ended != step.ended {
			t.Fatalf("at +%v: %d entries (ended %v), want %d (ended %v); err %v", c.now().Sub(sess.Created), len(w.Entries), w.Ended, step.n, step.ended, err)
		}
	}
}

// TestCodecChangeStartsNewInit: where the codec configuration changes the
// playlist has a discontinuity and a new EXT-X-MAP, even in NEVER mode.
func TestCodecChangeStartsNewInit(t *testing.T) {
	fs := newFakeStore(t)
	other := encode(t, x264BPyramid, false)
	h2, _ := kvsFragments(t, other, epoch)
	fs.headers[2] = h2
	c := &clock{t: epoch.Add(time.Hour)}
	fs.add(0, 1000, 1)
	fs.add(1000, 1000, 1)
	changed := fs.add(2000, 1000, 2)
	fs.add(3000, 1000, 2)
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityNever})
	w, _ := m.Window(sess, id)
	if len(w.Entries) != 4 || w.Entries[1].Discontinuity || !w.Entries[2].Discontinuity || w.Entries[2].Init != changed.Seq || w.Entries[3].Init != changed.Seq {
		t.Fatalf("entries %+v", w.Entries)
	}
	b, err := MediaPlaylist(sess, "T", w, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "#EXT-X-MAP:"); n != 2 {
		t.Fatalf("%d EXT-X-MAP tags, want 2:\n%s", n, b)
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		t.Fatalf("gohlslib cannot read the playlist back: %v\n%s", err, b)
	}
}

// TestOnGapDiscontinuity: ON_DISCONTINUITY marks gaps and overlaps over
// 50 ms only.
func TestOnGapDiscontinuity(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Hour)}
	fs.add(0, 1000, 1)
	fs.add(1030, 1000, 1) // 30 ms gap: none
	fs.add(2500, 1000, 1) // 470 ms gap
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityOnGap, DisplayTimestamp: true})
	w, _ := m.Window(sess, id)
	if w.Entries[1].Discontinuity || !w.Entries[2].Discontinuity {
		t.Fatalf("discontinuities %v %v, want false true", w.Entries[1].Discontinuity, w.Entries[2].Discontinuity)
	}
	b, _ := MediaPlaylist(sess, "T", w, 1)
	if !strings.Contains(string(b), "#EXT-X-PROGRAM-DATE-TIME:"+time.UnixMilli(epoch.UnixMilli()+2500).UTC().Format("2006-01-02T15:04:05.999Z07:00")) {
		t.Fatalf("no producer time in the playlist:\n%s", b)
	}
}

// TestLiveNeedsRecentFragment: LIVE is refused for a stream whose newest
// fragment is over 30 s old, and range modes for ranges without fragments.
func TestLiveNeedsRecentFragment(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Minute)}
	fs.add(0, 1000, 1)
	m := newSessions(t, fs, c)
	sess := Session{Kind: KindHLS, Stream: "s", Mode: ModeLive, MaxResults: 5}
	if err := m.Prepare(&sess); err == nil {
		t.Fatal("a LIVE session of a stream idle for a minute was prepared")
	}
	sess = Session{Kind: KindHLS, Stream: "s", Mode: ModeOnDemand, ProducerTime: true, Start: epoch.Add(time.Hour), End: epoch.Add(2 * time.Hour), MaxResults: 5}
	if err := m.Prepare(&sess); err == nil {
		t.Fatal("a session without fragments in its range was prepared")
	}
}
