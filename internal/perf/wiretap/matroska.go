package wiretap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/kvsgo/kvsgo/mkv"
)

// mkvScanner follows a Matroska stream pushed to it in pieces as they
// cross the wire, each with the time it arrived. It reads only what
// timing needs (TimecodeScale, Cluster Timecode, SimpleBlock headers) and
// skips the rest without buffering it, so it costs next to nothing per
// byte and never holds a frame.
//
// It does not track nesting: Segment, Info, Cluster and BlockGroup are
// entered (their children follow as if flat), everything else is skipped
// by its size. That is enough for the layout KVS producers write, where a
// Cluster of unknown size ends where the next Cluster, Tags or EBML header
// begins.
type mkvScanner struct {
	rec *recorder

	// The element header being read: ID and size vints.
	hdr          [12]byte
	hn           int
	idLen, szLen int

	id      mkv.ID
	size    int64 // payload size, -1 unknown
	remain  int64 // payload bytes still to come
	collect []byte
	want    int // payload bytes to collect before skipping the rest
	inBody  bool

	inCluster bool
	clusterTC int64
	err       error
}

// Payload prefixes worth reading: unsigned integers of up to 8 bytes, and
// a block's track number (a vint, up to 8 bytes), timecode and flags.
const blockHeadMax = 8 + 2 + 1

var errUnknownSize = errors.New("an element of unknown size that cannot have one")

// feed scans p, which arrived at at.
func (m *mkvScanner) feed(p []byte, at time.Time) {
	for len(p) > 0 && m.err == nil {
		if !m.inBody {
			p = m.header(p, at)
			continue
		}
		if len(m.collect) < m.want {
			n := min(m.want-len(m.collect), len(p))
			m.collect = append(m.collect, p[:n]...)
			p, m.remain = p[n:], m.remain-int64(n)
		}
		n := int(min(m.remain, int64(len(p))))
		p, m.remain = p[n:], m.remain-int64(n)
		if m.remain == 0 {
			m.inBody = false
			m.element(at)
		}
	}
}

// header reads the next element's ID and size from p and returns the rest.
func (m *mkvScanner) header(p []byte, at time.Time) []byte {
	for len(p) > 0 {
		b := p[0]
		switch {
		case m.hn == 0:
			m.idLen = vintLen(b)
			if m.idLen == 0 || m.idLen > 4 {
				m.err = fmt.Errorf("element ID starting 0x%02X", b)
				return nil
			}
		case m.hn == m.idLen:
			m.szLen = vintLen(b)
			if m.szLen == 0 {
				m.err = errors.New("element size starting 0x00")
				return nil
			}
		}
		m.hdr[m.hn] = b
		m.hn++
		p = p[1:]
		if m.hn > m.idLen && m.hn == m.idLen+m.szLen {
			m.begin(at)
			return p
		}
	}
	return p
}

func vintLen(b byte) int {
	for i := range 8 {
		if b&(0x80>>i) != 0 {
			return i + 1
		}
	}
	return 0
}

// begin acts on an element whose header has just been read.
func (m *mkvScanner) begin(at time.Time) {
	var id uint32
	for _, b := range m.hdr[:m.idLen] {
		id = id<<8 | uint32(b)
	}
	sz := m.hdr[m.idLen : m.idLen+m.szLen]
	v := uint64(sz[0] & (0xFF >> m.szLen))
	allOnes := v == uint64(0xFF>>m.szLen)
	for _, b := range sz[1:] {
		v = v<<8 | uint64(b)
		allOnes = allOnes && b == 0xFF
	}
	m.hn = 0
	m.id, m.size = mkv.ID(id), int64(v)
	if allOnes {
		m.size = -1
	}
	if v > 1<<56 {
		m.err = fmt.Errorf("element 0x%X of %d bytes", id, v)
		return
	}
	switch m.id {
	case mkv.IDSegment, mkv.IDInfo, mkv.IDBlockGroup:
		return // enter: the children follow
	case mkv.IDCluster:
		m.endCluster(at)
		m.inCluster = true
		m.clusterTC = 0
		m.rec.fragmentStarted(at)
		return
	case mkv.IDEBML, mkv.IDTags:
		m.endCluster(at)
	}
	if m.size < 0 {
		m.err = fmt.Errorf("%w: 0x%X", errUnknownSize, id)
		return
	}
	m.want = 0
	switch m.id {
	case mkv.IDTimecodeScale, mkv.IDTimecode:
		m.want = int(min(m.size, 8))
	case mkv.IDSimpleBlock, mkv.IDBlock:
		m.want = int(min(m.size, blockHeadMax))
	}
	m.collect = m.collect[:0]
	m.remain = m.size
	m.inBody = true
	if m.remain == 0 {
		m.inBody = false
		m.element(at)
	}
}

// element acts on an element whose payload has been read or skipped.
func (m *mkvScanner) element(at time.Time) {
	switch m.id {
	case mkv.IDTimecodeScale:
		if v := beUint(m.collect); v > 0 && v < 1<<40 {
			m.rec.scale(int64(v))
		}
	case mkv.IDTimecode:
		if m.inCluster {
			m.clusterTC = int64(beUint(m.collect) & (1<<62 - 1))
			m.rec.fragmentTimecode(m.clusterTC)
		}
	case mkv.IDSimpleBlock, mkv.IDBlock:
		if !m.inCluster {
			m.err = errors.New("a block outside a Cluster")
			return
		}
		track, w := blockTrack(m.collect)
		if w == 0 || len(m.collect) < w+3 {
			m.err = errors.New("a block too short for its header")
			return
		}
		rel := int64(int16(binary.BigEndian.Uint16(m.collect[w:])))
		key := m.id == mkv.IDSimpleBlock && m.collect[w+2]&mkv.FlagKey != 0
		m.rec.frame(Frame{Track: track, Timecode: m.clusterTC + rel, Key: key, Size: int(m.size) - w - 3, At: at})
	}
}

// end is the end of the body.
func (m *mkvScanner) end(at time.Time) { m.endCluster(at) }

func (m *mkvScanner) endCluster(at time.Time) {
	if m.inCluster {
		m.inCluster = false
		m.rec.fragmentCompleted(at)
	}
}

func beUint(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// blockTrack reads a block's track number vint; width 0 if invalid.
func blockTrack(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	w := vintLen(b[0])
	if w == 0 || len(b) < w {
		return 0, 0
	}
	v := uint64(b[0] & (0xFF >> w))
	for _, x := range b[1:w] {
		v = v<<8 | uint64(x)
	}
	return v, w
}
