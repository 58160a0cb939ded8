package playback

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/kvsgo/kvsgo/internal/store"
)

// fakeStore is an in-memory Source: fragments of one stream, in ingest
// order, with duplicates allowed (ingest no longer drops them). The real
// store's behaviour behind the same interface is tested in store_test.go.
type fakeStore struct {
	mu      sync.Mutex
	cutoff  int64 // the retention cutoff, server time in ms
	gone    bool  // the stream was deleted
	visited int   // fragments Scan has handed out
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
// a duration, received 100 ms after its producer time; segment picks its
// stream header.
func (s *fakeStore) add(producerMS, durMS int64, segment uint32) store.Fragment {
	return s.addAt(producerMS, producerMS+100, durMS, segment)
}

// addAt appends a fragment received at serverMS (ms after epoch).
func (s *fakeStore) addAt(producerMS, serverMS, durMS int64, segment uint32) store.Fragment {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := store.Fragment{Seq: uint64(len(s.frags)+1) * 2, ProducerMS: epoch.UnixMilli() + producerMS,
		ServerMS: epoch.UnixMilli() + serverMS, DurationMS: durMS, Segment: segment, BodyLen: 1000}
	s.frags = append(s.frags, f)
	close(s.changed)
	s.changed = make(chan struct{})
	return f
}

func (s *fakeStore) StreamByID(id store.StreamID) (store.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return store.Stream{}, store.ErrStreamNotFound
	}
	return store.Stream{ID: id, Name: id.Name(), Status: store.StatusActive, RetentionHours: 24}, nil
}

func (s *fakeStore) RetentionCutoff(store.Stream) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cutoff
}

// ScanByProducerTime: by producer timestamp, equal ones in ingest order.
func (s *fakeStore) ScanByProducerTime(_ store.StreamID, fromMS int64, fn func(store.Fragment) bool) error {
	s.mu.Lock()
	frags := append([]store.Fragment(nil), s.frags...)
	s.mu.Unlock()
	slices.SortStableFunc(frags, func(a, b store.Fragment) int { return cmp.Compare(a.ProducerMS, b.ProducerMS) })
	for _, f := range frags {
		if f.ProducerMS >= fromMS && !fn(f) {
			break
		}
	}
	return nil
}

func (s *fakeStore) FirstWithProducerTime(_ store.StreamID, producerMS int64) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frags {
		if f.ProducerMS == producerMS {
			return f.Seq, true, nil
		}
	}
	return 0, false, nil
}

func (s *fakeStore) Scan(_ store.StreamID, after uint64, fn func(store.Fragment) bool) error {
	s.mu.Lock()
	frags := append([]store.Fragment(nil), s.frags...)
	gone := s.gone
	s.mu.Unlock()
	if gone {
		return store.ErrStreamNotFound
	}
	for _, f := range frags {
		if f.Seq <= after {
			continue
		}
		s.mu.Lock()
		s.visited++
		s.mu.Unlock()
		if !fn(f) {
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
	if s.gone {
		return store.Fragment{}, store.ErrStreamNotFound
	}
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
// played once, the first ingested. A late fragment older than the newest
// shown is left out of LIVE and LIVE_REPLAY playlists and kept in
// ON_DEMAND ones (in ingest order), as the service documents.
func TestPlaylistDropsDuplicatesKeepsFirst(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(10 * time.Second)}
	first := fs.add(0, 1000, 1)
	second := fs.add(1000, 1000, 1)
	fs.add(1000, 1000, 1) // the resend of the second
	fs.add(3000, 1000, 1)
	fs.add(2000, 1000, 1) // late and older than the newest shown
	m := newSessions(t, fs, c)
	for _, tc := range []struct {
		mode Mode
		want []int64
	}{
		{ModeLive, []int64{0, 1000, 3000}},
		{ModeOnDemand, []int64{0, 1000, 3000, 2000}},
		{ModeLiveReplay, []int64{0, 1000, 3000}},
	} {
		sess := Session{Mode: tc.mode, ProducerTime: true, MaxResults: 100, Discontinuity: DiscontinuityNever}
		if tc.mode != ModeLive {
			sess.Start, sess.End = epoch, epoch.Add(time.Minute)
		}
		sess, id := open(t, m, sess)
		// LIVE_REPLAY shows fragments as its clock reaches them.
		c.advance(time.Minute)
		w, err := m.Window(sess, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := starts(w); !slices.Equal(got, tc.want) {
			t.Fatalf("%s: playlist starts %v, want %v", tc.mode, got, tc.want)
		}
		if w.Entries[0].Fragment.Seq != first.Seq || w.Entries[1].Fragment.Seq != second.Seq {
			t.Fatalf("%s: the duplicate kept is %d, want the first ingested %d", tc.mode, w.Entries[1].Fragment.Seq, second.Seq)
		}
		for i, e := range w.Entries {
			if e.MSN != uint64(i) {
				t.Fatalf("%s: entry %d has media sequence number %d", tc.mode, i, e.MSN)
			}
		}
		if w.Ended != (tc.mode != ModeLive) {
			t.Fatalf("%s: playlist ended %v", tc.mode, w.Ended)
		}
	}
	clip, err := m.ClipFragments("s", true, epoch, epoch.Add(time.Minute))
	if err != nil || len(clip) != 4 || clip[1].Seq != second.Seq {
		t.Fatalf("clip fragments %v %v", clip, err)
	}
}

// TestServerTimeSessionsDropResends: a resend has its own server timestamp
// but the producer's: sessions that select by server time drop it too.
func TestServerTimeSessionsDropResends(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Minute)}
	fs.add(0, 1000, 1)
	orig := fs.add(1000, 1000, 1)
	resend := fs.addAt(1000, 5000, 1000, 1) // stored again 4 s later
	fs.add(2000, 1000, 1)
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, Start: epoch, End: epoch.Add(30 * time.Second),
		MaxResults: 100, Discontinuity: DiscontinuityAlways})
	w, err := m.Window(sess, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range w.Entries {
		if e.Fragment.Seq == resend.Seq {
			t.Fatalf("the resend %d is in the playlist %v", resend.Seq, starts(w))
		}
	}
	if len(w.Entries) != 3 || w.Entries[1].Fragment.Seq != orig.Seq {
		t.Fatalf("playlist %v, want the three fragments with the first of the pair", starts(w))
	}
}

// TestExpiredFragmentsNotPlayed: fragments older than the stream's
// retention are left out of new playlists, dropped from ones computed
// before they expired, and refused as segments, swept yet or not; a
// duplicate whose first copy has expired plays, as it will once the sweep
// has removed the first.
func TestExpiredFragmentsNotPlayed(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Minute)}
	old := fs.add(0, 1000, 1)
	fs.add(1000, 1000, 1)
	fs.add(2000, 1000, 1)
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityNever})
	if w, _ := m.Window(sess, id); len(w.Entries) != 3 {
		t.Fatalf("before expiry: %v", starts(w))
	}
	fs.mu.Lock()
	fs.cutoff = old.ServerMS + 1 // the first fragment expires
	fs.mu.Unlock()
	w, err := m.Window(sess, id)
	if err != nil || !slices.Equal(starts(w), []int64{1000, 2000}) || w.Entries[0].MSN != 1 {
		t.Fatalf("after expiry the playlist is %v (first MSN %d), %v; want [1000 2000] from MSN 1", starts(w), w.Entries[0].MSN, err)
	}
	if _, err := m.Fragment(sess, old.Number()); !errors.Is(err, ErrExpired) {
		t.Fatalf("an expired fragment's segment: %v", err)
	}
	c.advance(time.Millisecond) // another session, not the cached one
	fresh, freshID := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityNever})
	if w, _ := m.Window(fresh, freshID); !slices.Equal(starts(w), []int64{1000, 2000}) || w.Entries[0].MSN != 0 {
		t.Fatalf("a new session's playlist is %v", starts(w))
	}
	again := fs.addAt(0, 3000, 1000, 1) // the expired one's timestamp again
	if dup, err := m.duplicate("s", again, old.ServerMS+1); err != nil || dup {
		t.Fatalf("a repeat of an expired fragment's timestamp counts as a duplicate (%v)", err)
	}
	if dup, err := m.duplicate("s", again, 0); err != nil || !dup {
		t.Fatalf("a repeat of a live fragment's timestamp does not count as a duplicate (%v)", err)
	}
}

// TestSessionOfDeletedStream: once the stream is deleted, every read of a
// session says so, whatever the session had cached.
func TestSessionOfDeletedStream(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Minute)}
	f := fs.add(0, 1000, 1)
	m := newSessions(t, fs, c)
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch, End: epoch.Add(time.Minute),
		MaxResults: 100, Discontinuity: DiscontinuityNever})
	if _, err := m.Window(sess, id); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.gone = true
	fs.mu.Unlock()
	if _, err := m.Window(sess, id); !errors.Is(err, ErrStreamGone) {
		t.Fatalf("the cached playlist of a deleted stream: %v", err)
	}
	if _, err := m.Fragment(sess, f.Number()); !errors.Is(err, ErrStreamGone) {
		t.Fatalf("a segment of a deleted stream: %v", err)
	}
	if _, err := m.ClipFragments("s", true, epoch, epoch.Add(time.Minute)); !errors.Is(err, ErrStreamGone) {
		t.Fatalf("a clip of a deleted stream: %v", err)
	}
}

// TestProducerRangeStartsAtItsFirstFragment: a producer-time range late in
// a long stream is found with the producer-time index: the ingest-order
// walk starts at the range's first-ingested fragment, and the playlist is
// the one a walk from the beginning gives.
func TestProducerRangeStartsAtItsFirstFragment(t *testing.T) {
	fs := newFakeStore(t)
	c := &clock{t: epoch.Add(time.Hour)}
	for i := range 500 {
		fs.add(int64(i)*1000, 1000, 1)
	}
	late := fs.add(200_500, 1000, 1) // in the range, ingested last
	m := newSessions(t, fs, c)
	fs.mu.Lock()
	fs.visited = 0
	fs.mu.Unlock()
	sess, id := open(t, m, Session{Mode: ModeOnDemand, ProducerTime: true, Start: epoch.Add(200 * time.Second),
		End: epoch.Add(210 * time.Second), MaxResults: 100, Discontinuity: DiscontinuityNever})
	w, err := m.Window(sess, id)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{200_000, 201_000, 202_000, 203_000, 204_000, 205_000, 206_000, 207_000, 208_000, 209_000, 210_000, 200_500}
	if !slices.Equal(starts(w), want) || w.Entries[len(w.Entries)-1].Fragment.Seq != late.Seq {
		t.Fatalf("playlist %v, want %v", starts(w), want)
	}
	fs.mu.Lock()
	visited := fs.visited
	fs.mu.Unlock()
	// Prepare and Window each walk from the range's first fragment to the
	// end of the stream: 301 fragments each, not the 200 before it.
	if visited > 2*302 {
		t.Fatalf("the ingest-order walk looked at %d fragments; the range starts 200 fragments in", visited)
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
