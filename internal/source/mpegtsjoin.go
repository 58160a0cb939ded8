package source

import (
	"bytes"
	"io"
)

// tsJoins mends the continuity counters where two MPEG-TS streams were
// joined (cat a.ts b.ts), so that the demuxer keeps the frames on both
// sides of the join.
//
// Each PID's packets count 0-15; the demuxer (astits) drops a half-read
// PES when the count skips, and drops a packet that repeats the count. At a
// join the count restarts, so the last frame of the first stream (still
// being read) and, one time in sixteen, the first packet of the second
// would be lost. A skip on a packet that starts a new PES is a join: the
// frame before it is complete, and the packet is renumbered. A skip in the
// middle of a PES is packets lost on the way: the frame is lost, and
// onLoss is told.
type tsJoins struct {
	r      io.Reader
	onLoss func(pid uint16)
	onJoin func(pid uint16)
	buf    [188 * 32]byte
	start  int                   // served up to here
	end    int                   // filled up to here; whole packets before done
	done   int                   // packets checked up to here
	last   map[uint16]*[188]byte // the last packet of each PID, renumbered
	shift  map[uint16]uint8      // added to each PID's counters since its last join
	err    error                 // the input's, returned once what was read is served
}

func newTSJoins(r io.Reader, onJoin, onLoss func(pid uint16)) *tsJoins {
	return &tsJoins{r: r, onJoin: onJoin, onLoss: onLoss, last: map[uint16]*[188]byte{}, shift: map[uint16]uint8{}}
}

func (j *tsJoins) Read(p []byte) (int, error) {
	// Until a whole packet is checked (a Read of 0 bytes and no error
	// would make callers spin), or the input ends.
	for j.start == j.done {
		if j.err != nil {
			return 0, j.err
		}
		// Keep a partial packet, refill, then check the whole ones.
		n := copy(j.buf[:], j.buf[j.done:j.end])
		j.start, j.done, j.end = 0, 0, n
		m, err := j.r.Read(j.buf[j.end:])
		j.end += m
		for j.done+188 <= j.end {
			j.check(j.buf[j.done : j.done+188])
			j.done += 188
		}
		if err != nil {
			// The stream ends: a trailing partial packet goes as is.
			j.err, j.done = err, j.end
		}
	}
	n := copy(p, j.buf[j.start:j.done])
	j.start += n
	return n, nil
}

// check looks at one packet's continuity counter and renumbers the
// packets of a stream joined on, from the join on.
func (j *tsJoins) check(pkt []byte) {
	if pkt[0] != 0x47 {
		return // out of step: the demuxer resynchronises on its own
	}
	pid := uint16(pkt[1]&0x1f)<<8 | uint16(pkt[2])
	afc := pkt[3] >> 4 & 3
	if pid == 0x1fff || afc&1 == 0 {
		return // null packets and packets without payload do not count
	}
	shift := j.shift[pid]
	cc := (pkt[3] + shift) & 0xf
	pkt[3] = pkt[3]&0xf0 | cc
	if afc&2 != 0 && pkt[4] > 0 && pkt[5]&0x80 != 0 {
		j.remember(pid, pkt) // the discontinuity indicator: a counter may restart here
		return
	}
	prev, seen := j.last[pid]
	if !seen {
		j.remember(pid, pkt)
		return
	}
	want := (prev[3] + 1) & 0xf
	switch {
	case cc == want:
	case cc == prev[3]&0xf && bytes.Equal(pkt, prev[:]):
		return // a packet sent twice, which the demuxer drops
	case pkt[1]&0x40 != 0: // payload unit start: a join
		j.shift[pid] = (shift + want - cc) & 0xf
		pkt[3] = pkt[3]&0xf0 | want
		if j.onJoin != nil {
			j.onJoin(pid)
		}
	default:
		if j.onLoss != nil {
			j.onLoss(pid)
		}
	}
	j.remember(pid, pkt)
}

func (j *tsJoins) remember(pid uint16, pkt []byte) {
	p := j.last[pid]
	if p == nil {
		if len(j.last) > 64 {
			return // a corrupt stream inventing PIDs: stop keeping track
		}
		p = new([188]byte)
		j.last[pid] = p
	}
	copy(p[:], pkt)
}
