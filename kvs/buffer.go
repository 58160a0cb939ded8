package kvs

import "time"

// Fragment is one KVS fragment as the producer holds it until the service
// has it: a Cluster and its frames, in Matroska bytes.
type Fragment struct {
	// ID counts fragments from the start of the stream.
	ID uint64
	// Timecode is the Cluster timecode (milliseconds since the epoch).
	Timecode int64
	// Header is the stream header (EBML, Segment, Info, Tracks) the
	// fragment belongs to: a connection sends it before the fragment
	// unless it sent the same header last. Fragments share the slice.
	Header []byte
	Data   []byte
	// Frames counts the frames in Data.
	Frames int
	// Complete once the next fragment has started (or the stream ended).
	Complete bool
	// Acked is the furthest acknowledgement received.
	Acked AckEvent
	// CompletedAt is when the next fragment started.
	CompletedAt time.Time
}

// Buffer holds fragments from the moment their first frame arrives until
// the service has persisted them. The producer serialises calls. The
// in-memory implementation is MemoryBuffer; a disk-backed one can replace
// it to survive restarts.
type Buffer interface {
	// Start begins a new fragment under the given stream header,
	// completing the previous one.
	Start(timecode int64, header []byte) *Fragment
	// Append adds bytes to the newest fragment.
	Append(p []byte)
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
	f := &Fragment{ID: b.nextID, Timecode: tc, Header: header}
	if l := b.Last(); l != nil {
		l.Complete = true
		// Fragments are alike: size the new one like the last, so that
		// frames append without regrowing it.
		want := len(l.Data) + len(l.Data)/4
		for i := len(b.spare) - 1; i >= 0 && f.Data == nil; i-- {
			if cap(b.spare[i]) >= want {
				f.Data = b.spare[i][:0]
				b.spare = append(b.spare[:i], b.spare[i+1:]...)
			}
		}
		if f.Data == nil {
			f.Data = make([]byte, 0, want)
		}
	}
	b.nextID++
	b.frags = append(b.frags, f)
	return f
}

// Append implements Buffer.
func (b *MemoryBuffer) Append(p []byte) {
	if l := b.Last(); l != nil {
		l.Data = append(l.Data, p...)
		b.bytes += int64(len(p))
	}
}

// Get implements Buffer.
func (b *MemoryBuffer) Get(id uint64) *Fragment {
	if len(b.frags) == 0 || id < b.frags[0].ID {
		return nil
	}
	i := id - b.frags[0].ID
	if i >= uint64(len(b.frags)) {
		return nil
	}
	return b.frags[i]
}

// ByTimecode implements Buffer.
func (b *MemoryBuffer) ByTimecode(tc int64) *Fragment {
	for _, f := range b.frags {
		if f.Timecode == tc {
			return f
		}
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
		// Only a fragment the service has whole is surely not being
		// written to the connection any more.
		if f := b.frags[0]; len(b.spare) < 4 && f.ID < inFlight && (f.Acked == AckPersisted || f.Acked == AckReceived) {
			b.spare = append(b.spare, b.frags[0].Data)
		}
		b.dropFirst()
		n++
	}
	return n
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
	b.bytes -= int64(len(b.frags[0].Data))
	b.frags[0] = nil
	b.frags = b.frags[1:]
}

// Size implements Buffer.
func (b *MemoryBuffer) Size() (int, int64) { return len(b.frags), b.bytes }
