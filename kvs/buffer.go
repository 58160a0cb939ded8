package kvs

import "time"

// Fragment is one KVS fragment as the producer holds it until the service
// has it: a Cluster and its frames, in Matroska bytes.
type Fragment struct {
	// ID counts fragments in the buffer's order (a disk buffer's backlog
	// from an earlier run first).
	ID uint64
	// Timecode is the Cluster timecode (milliseconds since the epoch);
	// End is that of its latest frame.
	Timecode, End int64
	// Header is the stream header (EBML, Segment, Info, Tracks) the
	// fragment belongs to: a connection sends it before the fragment
	// unless it sent the same header last. Fragments under one header
	// share the slice.
	Header []byte
	// Data is the fragment's bytes while they are in memory; Size counts
	// them all. A disk buffer keeps older fragments on disk only (Data
	// nil): Buffer.Read reads them.
	Data []byte
	Size int
	// Frames counts the frames in it.
	Frames int
	// Complete once the next fragment has started (or the stream ended);
	// with a disk buffer, it is then on disk.
	Complete bool
	// Acked is the furthest acknowledgement received.
	Acked AckEvent
	// CompletedAt is when the next fragment started.
	CompletedAt time.Time
	// Recovered: buffered on disk by an earlier run.
	Recovered bool
	// Damaged: its bytes could not be read back intact (a disk buffer's
	// checksum or read failed); it is never sent.
	Damaged bool

	file    uint64 // a disk buffer's file number
	memOnly bool   // a disk buffer could not write it: it is in memory only
}

// Buffer holds fragments from the moment their first frame arrives until
// the service has persisted them. The producer serialises calls. The
// in-memory implementation is MemoryBuffer (the default); DiskBuffer keeps
// them on disk, to survive restarts and long outages.
type Buffer interface {
	// Start begins a new fragment under the given stream header,
	// completing the previous one.
	Start(timecode int64, header []byte) *Fragment
	// Append adds bytes to the newest fragment.
	Append(p []byte)
	// End completes the newest fragment (the stream ended, or the service
	// refused it).
	End()
	// Read returns the fragment's bytes from off on, or the next part of
	// them. The slice stays valid while the caller writes it out, until
	// its next call to Read. A fragment whose bytes cannot be read back
	// intact gives an error (and is marked Damaged).
	Read(f *Fragment, off int) ([]byte, error)
	// Get returns the fragment with the given ID, or nil if it was
	// released or dropped.
	Get(id uint64) *Fragment
	// ByTimecode finds a fragment by its Cluster timecode.
	ByTimecode(tc int64) *Fragment
	// First returns the oldest fragment held, or nil.
	First() *Fragment
	// Last returns the newest fragment, or nil.
	Last() *Fragment
	// Release drops fragments from the oldest up to the first one done
	// does not accept. Fragments from inFlight on may still be being
	// written to the connection: their memory must not be reused.
	Release(done func(*Fragment) bool, inFlight uint64) int
	// DropOldest removes the oldest fragment, for overflow.
	DropOldest() *Fragment
	// Size returns the fragments held and their bytes.
	Size() (fragments int, bytes int64)
}

// MemoryBuffer keeps fragments in memory.
type MemoryBuffer struct {
	frags  []*Fragment
	nextID uint64
	bytes  int64
	// spare holds the byte slices of released fragments for reuse, so
	// that a steady stream allocates nothing.
	spare [][]byte
}

// Start implements Buffer.
func (b *MemoryBuffer) Start(tc int64, header []byte) *Fragment {
	f := &Fragment{ID: b.nextID, Timecode: tc, End: tc, Header: header}
	if l := b.Last(); l != nil {
		l.Complete = true
		f.Data = takeSpare(&b.spare, len(l.Data)+len(l.Data)/4)
	}
	b.nextID++
	b.frags = append(b.frags, f)
	return f
}

// takeSpare returns an empty slice with at least want bytes of room, from
// spare if one is big enough: fragments are alike, so sizing the next one
// like the last lets frames append without regrowing it.
func takeSpare(spare *[][]byte, want int) []byte {
	s := *spare
	for i := len(s) - 1; i >= 0; i-- {
		if cap(s[i]) >= want {
			d := s[i][:0]
			*spare = append(s[:i], s[i+1:]...)
			return d
		}
	}
	return make([]byte, 0, want)
}

// Append implements Buffer.
func (b *MemoryBuffer) Append(p []byte) {
	if l := b.Last(); l != nil {
		l.Data = append(l.Data, p...)
		l.Size += len(p)
		b.bytes += int64(len(p))
	}
}

// End implements Buffer.
func (b *MemoryBuffer) End() {
	if l := b.Last(); l != nil {
		l.Complete = true
	}
}

// Read implements Buffer.
func (b *MemoryBuffer) Read(f *Fragment, off int) ([]byte, error) { return f.Data[off:], nil }

// Get implements Buffer.
func (b *MemoryBuffer) Get(id uint64) *Fragment { return getByID(b.frags, id) }

func getByID(frags []*Fragment, id uint64) *Fragment {
	if len(frags) == 0 || id < frags[0].ID {
		return nil
	}
	i := id - frags[0].ID
	if i >= uint64(len(frags)) {
		return nil
	}
	return frags[i]
}

// ByTimecode implements Buffer.
func (b *MemoryBuffer) ByTimecode(tc int64) *Fragment { return byTimecode(b.frags, tc) }

// byTimecode searches fragments for a timecode. Timecodes increase from
// fragment to fragment (the fragmenter refuses a fragment that would not
// start after the previous one, and new video starts after a disk
// buffer's backlog), so the search halves: a backlog of a day is 86,400
// fragments, and every ack looks one up.
func byTimecode(frags []*Fragment, tc int64) *Fragment {
	lo, hi := 0, len(frags)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if frags[m].Timecode < tc {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(frags) && frags[lo].Timecode == tc {
		return frags[lo]
	}
	return nil
}

// First implements Buffer.
func (b *MemoryBuffer) First() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	return b.frags[0]
}

// Last implements Buffer.
func (b *MemoryBuffer) Last() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	return b.frags[len(b.frags)-1]
}

// Release implements Buffer.
func (b *MemoryBuffer) Release(done func(*Fragment) bool, inFlight uint64) int {
	n := 0
	for len(b.frags) > 0 && done(b.frags[0]) {
		if f := b.frags[0]; reusable(f, inFlight) && len(b.spare) < 4 {
			b.spare = append(b.spare, f.Data)
		}
		b.dropFirst()
		n++
	}
	return n
}

// reusable reports whether a released fragment's memory can be reused:
// only a fragment the service has whole is surely not being written to
// the connection any more.
func reusable(f *Fragment, inFlight uint64) bool {
	return f.Data != nil && f.ID < inFlight && (f.Acked == AckPersisted || f.Acked == AckReceived)
}

// DropOldest implements Buffer.
func (b *MemoryBuffer) DropOldest() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	f := b.frags[0]
	b.dropFirst()
	return f
}

func (b *MemoryBuffer) dropFirst() {
	b.bytes -= int64(b.frags[0].Size)
	b.frags[0] = nil
	b.frags = b.frags[1:]
}

// Size implements Buffer.
func (b *MemoryBuffer) Size() (int, int64) { return len(b.frags), b.bytes }
