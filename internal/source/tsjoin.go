package source

import "io"

// tsSplices mends MPEG-TS continuity counters at the joins of
// concatenated streams (`cat a.ts b.ts`). The demuxer (go-astits) throws
// away the packet being assembled when a PID's continuity counter skips,
// so the last picture and audio of a were lost at every join. A counter
// that skips on a packet that starts a new payload is a join, not loss:
// the new payload is renumbered to follow on, and the one before it
// completes. A skip inside a payload is real loss and is left for the
// demuxer to discard.
type tsSplices struct {
	r   io.Reader
	buf [188 * 64]byte
	// buf[i:end] is mended and due; buf[end:n] the start of a packet
	i, end, n int
	last      [8192]int16 // last counter of each PID, -1 before any
	shift     [8192]byte  // added to each PID's counters since its last join
	started   [8192]bool  // its last packet started a payload
	err       error
}

func newTSSplices(r io.Reader) *tsSplices {
	t := &tsSplices{r: r}
	for i := range t.last {
		t.last[i] = -1
	}
	return t
}

func (t *tsSplices) Read(p []byte) (int, error) {
	for t.i == t.end {
		// The packet not yet whole moves to the front.
		t.n = copy(t.buf[:], t.buf[t.end:t.n])
		t.i, t.end = 0, 0
		if t.err != nil {
			if t.n == 0 {
				return 0, t.err
			}
			t.end = t.n // a last, partial packet, as it is
			break
		}
		var k int
		k, t.err = t.r.Read(t.buf[t.n:])
		t.n += k
		t.end = t.n - t.n%188
		t.mend(t.buf[:t.end])
	}
	k := copy(p, t.buf[t.i:t.end])
	t.i += k
	return k, nil
}

// mend renumbers the continuity counters of whole packets in b.
func (t *tsSplices) mend(b []byte) {
	for ; len(b) >= 188; b = b[188:] {
		if b[0] != 0x47 {
			return // not aligned: leave it to the demuxer
		}
		pid := int(b[1]&0x1f)<<8 | int(b[2])
		if pid == 0x1fff || b[3]&0x10 == 0 { // null packets, no payload
			continue
		}
		start := b[1]&0x40 != 0
		cc := (b[3]&0x0f + t.shift[pid]) & 0x0f
		if prev := t.last[pid]; start && prev >= 0 {
			next := byte(prev+1) & 0x0f
			// A new payload whose counter does not follow on: a join. (The
			// same counter again after a payload start is a duplicate.)
			if cc != next && (cc != byte(prev) || !t.started[pid]) {
				t.shift[pid] = (t.shift[pid] + next - cc) & 0x0f
				cc = next
			}
		}
		b[3] = b[3]&0xf0 | cc
		t.last[pid], t.started[pid] = int16(cc), start
	}
}
