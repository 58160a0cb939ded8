package playback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
)

// Source is what playback reads from the store (*store.Store). Streams are
// named by identity: a session of a deleted stream reads nothing of one
// created again under its name.
type Source interface {
	StreamByID(id store.StreamID) (store.Stream, error)
	// RetentionCutoff is the server time (Unix ms) before which a
	// stream's fragments have expired, swept yet or not.
	RetentionCutoff(st store.Stream) int64
	Scan(id store.StreamID, afterSeq uint64, fn func(store.Fragment) bool) error
	// ScanByProducerTime walks fragments in producer-timestamp order from
	// fromMS on, equal timestamps in ingest order.
	ScanByProducerTime(id store.StreamID, fromMS int64, fn func(store.Fragment) bool) error
	// FirstWithProducerTime is the first-ingested fragment with this
	// producer timestamp: one index seek.
	FirstWithProducerTime(id store.StreamID, producerMS int64) (seq uint64, ok bool, err error)
	Latest(id store.StreamID) (uint64, error)
	Fragment(id store.StreamID, seq uint64) (store.Fragment, error)
	ReadFragment(id store.StreamID, f store.Fragment) (header, body []byte, err error)
	WaitAfter(ctx context.Context, id store.StreamID, afterSeq uint64) error
}

// Entry is one fragment of a session's playlist.
type Entry struct {
	Fragment store.Fragment
	// MSN is the media sequence number: the entry's index in the session.
	MSN uint64
	// Start is the fragment's start by the session's clock (producer or
	// server time), Duration its length.
	Start    time.Time
	Duration time.Duration
	// Discontinuity: a player must reset its timeline before this entry.
	// DSN counts the discontinuities up to and including this entry.
	Discontinuity bool
	DSN           uint64
	// Init is the sequence number of the fragment whose header holds this
	// entry's codec configuration (the first of a run of equal ones).
	Init uint64
}

// Window is what a playlist shows at one moment.
type Window struct {
	Entries []Entry
	// Ended: no entry will be added (ON_DEMAND, or a LIVE_REPLAY whose
	// range is over).
	Ended bool
	// TargetDuration is the longest entry, rounded up to whole seconds,
	// and never shrinks within a session.
	TargetDuration time.Duration
}

// Errors of session creation and playback requests.
var (
	// ErrNoFragments: nothing to play in the session's range, or (LIVE)
	// nothing in the last 30 seconds (ResourceNotFoundException).
	ErrNoFragments = errors.New("no fragments")
	// ErrNotInSession: a fragment the session does not include.
	ErrNotInSession = errors.New("the fragment is not part of this session")
	// ErrExpired: a fragment older than the stream's retention period.
	ErrExpired = errors.New("the fragment is older than the stream's retention period")
	// ErrStreamGone: the session's stream was deleted (or deleted and
	// created again: another stream of the same name).
	ErrStreamGone = errors.New("the session's stream no longer exists")
)

// Limits of the service, and of what is kept in memory.
const (
	liveRecent  = 30 * time.Second      // a LIVE session needs a fragment this recent
	gapLimit    = 50 * time.Millisecond // ON_DISCONTINUITY marks gaps and overlaps beyond this
	maxSessions = 256                   // playlist states kept in memory
	maxHeaders  = 256                   // parsed stream headers kept in memory
	waitBound   = 30 * time.Second      // the longest blocking playlist request
	minEntryDur = time.Millisecond      // EXTINF must be positive
	scanBatch   = 64                    // fragments looked at per step back
	replayAhead = 8                     // LIVE_REPLAY entries read ahead of its clock
)

// MaxResults is the largest MaxMediaPlaylistFragmentResults.
const MaxResults = 5000

// DefaultMaxResults returns MaxMediaPlaylistFragmentResults' default for a
// mode.
func DefaultMaxResults(mode Mode) int {
	if mode == ModeOnDemand {
		return 1000
	}
	return 5
}

// Sessions builds the playlists of playback sessions and checks their
// segment requests. A session is defined by its token alone; Sessions only
// caches what it computed from one, so that a live playlist costs the new
// fragments, not the whole session, and a restart loses nothing.
type Sessions struct {
	Source Source
	Signer *Signer
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil.
	Now func() time.Time

	mu      sync.Mutex
	states  map[string]*state
	headers map[headerKey]headerEntry
}

type headerKey struct {
	stream  store.StreamID
	segment uint32
	offset  int64
}

type headerEntry struct {
	tracks []*Track
	err    error
}

func (m *Sessions) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Sessions) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Tracks returns the tracks of a fragment's stream header, parsed once per
// header the store keeps.
func (m *Sessions) Tracks(stream store.StreamID, f store.Fragment) ([]*Track, error) {
	key := headerKey{stream, f.Segment, f.HeaderOff}
	m.mu.Lock()
	he, ok := m.headers[key]
	m.mu.Unlock()
	if ok {
		return he.tracks, he.err
	}
	header, _, err := m.Source.ReadFragment(stream, f)
	if err != nil {
		return nil, err // not cached: the store may answer later
	}
	tracks, err := ParseHeader(header)
	m.mu.Lock()
	if m.headers == nil || len(m.headers) >= maxHeaders {
		m.headers = map[headerKey]headerEntry{}
	}
	m.headers[key] = headerEntry{tracks, err}
	m.mu.Unlock()
	return tracks, err
}

// Prepare completes a new session before its token is issued: for LIVE it
// finds the first fragment (the newest MaxResults, at least one of them from
// the last 30 s); for every mode it checks that there is something to play
// and that the stream's tracks can be played.
func (m *Sessions) Prepare(sess *Session) error {
	if sess.Mode == ModeLive {
		origin, err := m.liveOrigin(sess)
		if err != nil {
			return err
		}
		sess.Origin = origin
	}
	st := &state{}
	if err := m.advance(st, sess, m.now()); err != nil {
		return err
	}
	if st.count == 0 {
		return ErrNoFragments
	}
	if sess.Mode == ModeLive {
		// The newest fragment must be recent: a stream nobody sends to has
		// no live session.
		last := st.entries[len(st.entries)-1].Fragment
		if m.now().Sub(time.UnixMilli(last.ServerMS+last.DurationMS)) > liveRecent {
			return fmt.Errorf("%w: the newest fragment of %s ended %s ago", ErrNoFragments, sess.Stream.Name(),
				m.now().Sub(time.UnixMilli(last.ServerMS+last.DurationMS)).Round(time.Second))
		}
	}
	_, err := m.Tracks(sess.Stream, st.entries[0].Fragment)
	return err
}

// liveOrigin finds the fragment a LIVE session starts with: the first of
// the newest MaxResults that the playlist rules keep.
func (m *Sessions) liveOrigin(sess *Session) (uint64, error) {
	latest, err := m.Source.Latest(sess.Stream)
	if err != nil {
		return 0, err
	}
	if latest == 0 {
		return 0, ErrNoFragments
	}
	// Sequence numbers are shared by all streams: look back in growing
	// steps until enough of this stream's fragments are found.
	var frags []store.Fragment
	for back := uint64(scanBatch); ; back *= 4 {
		after := uint64(0)
		if latest > back {
			after = latest - back
		}
		frags = frags[:0]
		err := m.Source.Scan(sess.Stream, after, func(f store.Fragment) bool {
			frags = append(frags, f)
			return true
		})
		if err != nil {
			return 0, err
		}
		if len(frags) > 2*sess.MaxResults || after == 0 {
			break
		}
	}
	cutoff, err := m.cutoff(sess)
	if err != nil {
		return 0, err
	}
	var kept []store.Fragment
	var newest int64
	for _, f := range frags {
		if f.ServerMS < cutoff || (len(kept) > 0 && sess.timestamp(f) < newest) {
			continue
		}
		dup, err := m.duplicate(sess.Stream, f, cutoff)
		if err != nil {
			return 0, streamErr(err)
		}
		if !dup {
			kept, newest = append(kept, f), sess.timestamp(f)
		}
	}
	if len(kept) == 0 {
		return 0, ErrNoFragments
	}
	return kept[max(0, len(kept)-sess.MaxResults)].Seq, nil
}

// cutoff returns the session's stream's retention cutoff (server time, Unix
// ms): fragments before it are not played even before the sweep removes
// them. ErrStreamGone once the stream is deleted.
func (m *Sessions) cutoff(sess *Session) (int64, error) {
	rec, err := m.Source.StreamByID(sess.Stream)
	if err != nil {
		return 0, streamErr(err)
	}
	if rec.Status == store.StatusDeleting {
		return 0, ErrStreamGone
	}
	return m.Source.RetentionCutoff(rec), nil
}

// streamErr turns the store's "no such stream" (the session's stream was
// deleted: its identity is gone, whatever now has its name) into
// ErrStreamGone.
func streamErr(err error) error {
	if errors.Is(err, store.ErrStreamNotFound) {
		return ErrStreamGone
	}
	return err
}

// duplicate reports whether f repeats the producer timestamp of a fragment
// ingested before it that has not expired. Playback keeps the first
// ingested, as the service does ("only the oldest ingested collection of
// fragments are returned"); the store keeps them all. The usual fragment,
// the first with its timestamp, costs one index seek.
func (m *Sessions) duplicate(id store.StreamID, f store.Fragment, cutoff int64) (bool, error) {
	first, ok, err := m.Source.FirstWithProducerTime(id, f.ProducerMS)
	if err != nil || !ok || first == f.Seq {
		return false, err
	}
	// Equal timestamps: the earlier ones count while they have not expired.
	dup := false
	err = m.Source.ScanByProducerTime(id, f.ProducerMS, func(g store.Fragment) bool {
		if g.ProducerMS != f.ProducerMS || g.Seq >= f.Seq {
			return false
		}
		dup = g.ServerMS >= cutoff
		return !dup
	})
	return dup, err
}

// rangeStart is where an ingest-order scan of a producer-time range may
// begin: just before the first-ingested fragment whose producer timestamp
// is in the range, found with the producer-time index, so that a range late
// in a long stream does not cost a walk over all that came before it.
func (m *Sessions) rangeStart(sess *Session) (uint64, error) {
	from := sess.Start.UnixMilli()
	if sess.Start.IsZero() || from < 0 {
		return 0, nil // the index orders timestamps from 1970 on
	}
	end := int64(math.MaxInt64)
	if !sess.End.IsZero() {
		end = sess.End.UnixMilli()
	}
	// Fragments ingested after latest are scanned in ingest order anyway.
	latest, err := m.Source.Latest(sess.Stream)
	if err != nil {
		return 0, err
	}
	first := latest + 1
	err = m.Source.ScanByProducerTime(sess.Stream, from, func(f store.Fragment) bool {
		if f.ProducerMS > end {
			return false
		}
		if f.ProducerMS >= from {
			first = min(first, f.Seq)
		}
		return true
	})
	return first - 1, err
}

// timestamp is a fragment's start by the session's clock, in ms.
func (s *Session) timestamp(f store.Fragment) int64 {
	if s.ProducerTime {
		return f.ProducerMS
	}
	return f.ServerMS
}

// state is what a session's playlist has computed so far.
type state struct {
	mu       sync.Mutex
	lastUsed time.Time

	started bool   // scanned holds where the session's fragments begin
	scanned uint64 // the last sequence number looked at
	done    bool   // no more entries can come
	count   uint64 // entries so far: the next MSN
	dsn     uint64
	newest  int64 // the latest start kept, ms
	prevEnd int64 // where the previous entry ended, ms
	cutoff  int64 // the stream's retention cutoff when last advanced, ms
	hdr     headerKey
	tracks  []*Track
	initSeq uint64
	target  time.Duration
	entries []Entry // the retained tail, ending with entry count-1
	// LIVE_REPLAY: entries[0:released] have been released by the clock.
	released int
	mediaSum time.Duration // duration of the released entries but the last
}

// Window returns the playlist of a session now.
func (m *Sessions) Window(sess Session, id string) (Window, error) {
	st := m.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := m.advance(st, &sess, m.now()); err != nil {
		return Window{}, err
	}
	return st.window(&sess), nil
}

// WaitWindow returns the playlist once it holds the entry with media
// sequence number msn (an HLS blocking playlist reload), or when wait has
// passed, or ctx ends, whichever is first.
func (m *Sessions) WaitWindow(ctx context.Context, sess Session, id string, msn uint64, wait time.Duration) (Window, error) {
	ctx, cancel := context.WithTimeout(ctx, min(wait, waitBound))
	defer cancel()
	for {
		st := m.state(id)
		st.mu.Lock()
		err := m.advance(st, &sess, m.now())
		w, have, scanned, done := st.window(&sess), st.count > msn, st.scanned, st.done
		st.mu.Unlock()
		if err != nil {
			return Window{}, err
		}
		if have || done || sess.Mode != ModeLive {
			return w, nil
		}
		if err := m.Source.WaitAfter(ctx, sess.Stream, scanned); err != nil {
			if ctx.Err() != nil {
				return w, nil // the wait is over: the playlist as it is
			}
			return Window{}, streamErr(err) // deleted while waiting
		}
	}
}

// state returns the cached state of a session, making room if needed.
func (m *Sessions) state(id string) *state {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.states == nil {
		m.states = map[string]*state{}
	}
	st, ok := m.states[id]
	if !ok {
		if len(m.states) >= maxSessions {
			var oldest string
			var at time.Time
			for k, v := range m.states {
				if oldest == "" || v.lastUsed.Before(at) {
					oldest, at = k, v.lastUsed
				}
			}
			delete(m.states, oldest)
		}
		st = &state{}
		m.states[id] = st
	}
	st.lastUsed = now
	return st
}

// advance reads the fragments that arrived since the state last looked and
// applies the service's playlist rules: fragments in ingest order, only
// those in the session's range and the stream's retention, none that
// repeats the producer timestamp of one ingested before it (a producer's
// resend: the first is kept), in LIVE and LIVE_REPLAY none older than the
// newest shown, a discontinuity per the session's mode and wherever the
// codec configuration changes.
func (m *Sessions) advance(st *state, sess *Session, now time.Time) error {
	cutoff, err := m.cutoff(sess)
	if err != nil {
		return err
	}
	st.cutoff = cutoff
	if !st.done {
		if err := m.scan(st, sess, now); err != nil {
			return err
		}
	}
	if sess.Mode == ModeLiveReplay {
		st.release(now.Sub(sess.Created), sess.MaxResults)
	}
	return nil
}

func (m *Sessions) scan(st *state, sess *Session, now time.Time) error {
	if !st.started {
		switch {
		case sess.Mode == ModeLive && sess.Origin > 0:
			st.scanned = sess.Origin - 1
		case sess.ProducerTime:
			from, err := m.rangeStart(sess)
			if err != nil {
				return streamErr(err)
			}
			st.scanned = from
		}
		st.started = true
	}
	caughtUp := true
	// Fragments are read a batch at a time and looked at outside the
	// store's read transaction, which must not be held while the
	// duplicate check opens another (bbolt can deadlock on that).
	batch := make([]store.Fragment, 0, scanBatch)
	for !st.done && caughtUp {
		batch = batch[:0]
		err := m.Source.Scan(sess.Stream, st.scanned, func(f store.Fragment) bool {
			batch = append(batch, f)
			return len(batch) < scanBatch
		})
		if err != nil {
			return streamErr(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, f := range batch {
			if done, ahead := st.enough(sess); done || ahead {
				st.done, caughtUp = done, !ahead
				break
			}
			st.scanned = f.Seq
			ts := sess.timestamp(f)
			if !sess.Start.IsZero() && ts < sess.Start.UnixMilli() {
				continue
			}
			if !sess.End.IsZero() && ts > sess.End.UnixMilli() {
				if !sess.ProducerTime {
					st.done = true // server timestamps only grow
					break
				}
				continue
			}
			if f.ServerMS < st.cutoff {
				continue // expired; the sweep has not removed it yet
			}
			if sess.Mode != ModeOnDemand && st.count > 0 && ts < st.newest {
				// LIVE and LIVE_REPLAY never add a fragment older than the
				// newest they show: a gap it would fill stays a gap.
				continue
			}
			dup, err := m.duplicate(sess.Stream, f, st.cutoff)
			if err != nil {
				return streamErr(err)
			}
			if dup {
				continue
			}
			if err := m.add(st, sess, f, ts); err != nil {
				m.log().Warn("playback leaves out a fragment", "stream", sess.Stream.Name(), "fragment", f.Number(), "error", err)
			}
		}
		if len(batch) < scanBatch {
			break // the last one the store had
		}
	}
	switch sess.Mode {
	case ModeOnDemand:
		st.done = true // its playlist does not change
	case ModeLiveReplay:
		if caughtUp && !sess.End.IsZero() && now.After(sess.End) {
			st.done = true
		}
	}
	return nil
}

// enough says whether a scan has what it needs: an ON_DEMAND playlist is
// full (done), or LIVE_REPLAY has read as far ahead of its clock as it
// needs (ahead).
func (st *state) enough(sess *Session) (done, ahead bool) {
	switch {
	case sess.Mode == ModeOnDemand && st.count >= uint64(sess.MaxResults):
		return true, false
	case sess.Mode == ModeLiveReplay && len(st.entries)-st.released > replayAhead:
		return false, true
	}
	return false, false
}

// add appends an entry.
func (m *Sessions) add(st *state, sess *Session, f store.Fragment, ts int64) error {
	key := headerKey{sess.Stream, f.Segment, f.HeaderOff}
	changed := false
	if st.count == 0 || key != st.hdr {
		tracks, err := m.Tracks(sess.Stream, f)
		if err != nil {
			return err
		}
		if st.count > 0 && !SameTracks(tracks, st.tracks) && !sess.TS {
			// fMP4 playlists are per track: their set cannot change.
			return fmt.Errorf("%w: the tracks changed", ErrUnsupportedMedia)
		}
		if st.count == 0 || !SameConfig(tracks, st.tracks) {
			changed = true
			st.initSeq = f.Seq
		}
		st.hdr, st.tracks = key, tracks
	}
	dur := max(time.Duration(f.DurationMS)*time.Millisecond, minEntryDur)
	disc := false
	if st.count > 0 {
		switch sess.Discontinuity {
		case DiscontinuityAlways:
			disc = true
		case DiscontinuityOnGap:
			gap := time.Duration(ts-st.prevEnd) * time.Millisecond
			disc = gap > gapLimit || gap < -gapLimit
		}
		disc = disc || changed
	}
	if disc {
		st.dsn++
	}
	e := Entry{Fragment: f, MSN: st.count, Start: time.UnixMilli(ts).UTC(), Duration: dur,
		Discontinuity: disc, DSN: st.dsn, Init: st.initSeq}
	st.entries = append(st.entries, e)
	if st.count == 0 || ts > st.newest {
		st.newest = ts
	}
	st.count++
	st.prevEnd = ts + f.DurationMS
	// LIVE keeps what its window shows; LIVE_REPLAY trims as its clock
	// moves (release); ON_DEMAND keeps at most MaxResults anyway.
	if sess.Mode == ModeLive && len(st.entries) > sess.MaxResults {
		st.entries = st.entries[len(st.entries)-sess.MaxResults:]
	}
	return nil
}

// release lets the LIVE_REPLAY clock through: the first entry at once, each
// next one when the one before has had its duration of wall time.
func (st *state) release(elapsed time.Duration, keep int) {
	for st.released < len(st.entries) {
		if st.released > 0 {
			prev := st.entries[st.released-1].Duration
			if st.mediaSum+prev > elapsed {
				break
			}
			st.mediaSum += prev
		}
		st.released++
	}
	if drop := st.released - keep; drop > 0 {
		st.entries = st.entries[drop:]
		st.released -= drop
	}
}

// window is the playlist of a state.
func (st *state) window(sess *Session) Window {
	var w Window
	shown := st.entries
	switch sess.Mode {
	case ModeLiveReplay:
		shown = st.entries[:st.released]
		w.Ended = st.done && st.released == len(st.entries)
	case ModeOnDemand:
		w.Ended = true
	}
	if len(shown) > sess.MaxResults {
		shown = shown[len(shown)-sess.MaxResults:]
	}
	// Fragments that expired since they were added are no longer played.
	w.Entries = make([]Entry, 0, len(shown))
	for _, e := range shown {
		if e.Fragment.ServerMS >= st.cutoff {
			w.Entries = append(w.Entries, e)
		}
	}
	// Each EXTINF, rounded to the nearest second, must not exceed the
	// target; the target may not shrink while a session plays.
	for _, e := range w.Entries {
		st.target = max(st.target, e.Duration.Round(time.Second))
	}
	w.TargetDuration = max(st.target, time.Second)
	return w
}

// Fragment returns a fragment a session's player asks for by number, if
// the session includes it: of its stream, in its range (a LIVE session
// includes what arrived from its first fragment on), and not expired.
func (m *Sessions) Fragment(sess Session, number string) (store.Fragment, error) {
	seq, err := store.ParseFragmentNumber(number)
	if err != nil {
		return store.Fragment{}, fmt.Errorf("%w: %s", ErrNotInSession, number)
	}
	cutoff, err := m.cutoff(&sess)
	if err != nil {
		return store.Fragment{}, err
	}
	f, err := m.Source.Fragment(sess.Stream, seq)
	if err != nil {
		return f, streamErr(err)
	}
	if f.ServerMS < cutoff {
		return f, fmt.Errorf("%w: %s", ErrExpired, number)
	}
	ts := sess.timestamp(f)
	if (sess.Mode == ModeLive && seq < sess.Origin) ||
		(!sess.Start.IsZero() && ts < sess.Start.UnixMilli()) ||
		(!sess.End.IsZero() && ts > sess.End.UnixMilli()) {
		return f, fmt.Errorf("%w: %s", ErrNotInSession, number)
	}
	return f, nil
}

// Load reads and parses a fragment.
func (m *Sessions) Load(stream store.StreamID, f store.Fragment) (*Fragment, error) {
	header, body, err := m.Source.ReadFragment(stream, f)
	if err != nil {
		return nil, err
	}
	return ParseFragment(header, body)
}

// Placement is where a session puts a fragment on the players' timeline:
// at its producer timestamp, whatever the selector. Server timestamps
// choose and order fragments and date them in playlists, but inside the
// media only the producer's timestamps keep the encoder's frame timing: a
// producer that sends a backlog in a burst after an outage gets server
// timestamps milliseconds apart, and media placed by them would overlap.
func (sess *Session) Placement(f store.Fragment) Placement {
	return Placement{BaseMS: f.ProducerMS, FrameInterval: time.Duration(f.DurationMS) * time.Millisecond, Sequence: uint32(f.Seq)}
}
