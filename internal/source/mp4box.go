package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
)

// The parts of ISO/IEC 14496-12 (MP4) the MP4 source needs. The index
// (moov) is read whole: it grows with the number of samples, a few bytes
// each, and its sample tables are read in place, never expanded. Samples
// are read one at a time, where the index says they are.

// errMP4 marks input that is not a usable MP4 file.
var errMP4 = errors.New("invalid MP4")

// maxMoov bounds the index kvsgo reads into memory: about 20 hours of
// 30 fps video with audio.
const maxMoov = 256 << 20

// maxSample bounds one sample read into memory.
const maxSample = 64 << 20

func mp4Errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMP4}, args...)...)
}

// mp4File is what the top level of an MP4 file holds.
type mp4File struct {
	moov       []byte
	fragmented bool // moof boxes: fragmented MP4
}

// readMP4Top walks the top-level boxes of an MP4 file of size bytes and
// reads the moov box.
func readMP4Top(r io.ReaderAt, size int64) (mp4File, error) {
	var (
		f   mp4File
		off int64
		hdr [16]byte
	)
	for off < size {
		if size-off < 8 {
			break // trailing bytes some writers leave
		}
		n := min(int64(len(hdr)), size-off)
		if _, err := r.ReadAt(hdr[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return f, fmt.Errorf("reading MP4: %w", err)
		}
		boxSize, h := uint64(binary.BigEndian.Uint32(hdr[:])), uint64(8)
		typ := string(hdr[4:8])
		switch boxSize {
		case 0:
			boxSize = uint64(size - off)
		case 1:
			if n < 16 {
				return f, mp4Errorf("the file ends inside a box header")
			}
			boxSize, h = binary.BigEndian.Uint64(hdr[8:]), 16
		}
		if boxSize < h {
			return f, mp4Errorf("box %q of %d bytes", printable(typ), boxSize)
		}
		if boxSize > uint64(size-off) {
			if typ == "moov" || f.moov == nil {
				return f, mp4Errorf("the file is truncated: its %q box needs %d bytes, %d are left (an unfinished recording or download?)",
					printable(typ), boxSize, size-off)
			}
			break // a cut-off mdat after the index: samples past the end are reported when reached
		}
		switch typ {
		case "moov":
			if boxSize-h > maxMoov {
				return f, mp4Errorf("its index (moov) is %d MB, more than the %d MB kvsgo reads", (boxSize-h)>>20, maxMoov>>20)
			}
			f.moov = make([]byte, boxSize-h)
			if _, err := r.ReadAt(f.moov, off+int64(h)); err != nil {
				return f, fmt.Errorf("reading the MP4 index: %w", err)
			}
		case "moof":
			f.fragmented = true
		}
		off += int64(boxSize)
	}
	if f.moov == nil {
		return f, mp4Errorf("no index (moov box): the recording was not finished, or this is not an MP4 file")
	}
	return f, nil
}

// printable keeps a box type readable in messages.
func printable(typ string) string {
	for _, c := range []byte(typ) {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x", typ)
		}
	}
	return typ
}

// mp4Children calls f with the type and payload of each box in b.
func mp4Children(b []byte, f func(typ string, payload []byte) error) error {
	for len(b) >= 8 {
		size, h := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		typ := string(b[4:8])
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return mp4Errorf("box %q cut short", printable(typ))
			}
			size, h = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < h || size > uint64(len(b)) {
			return mp4Errorf("box %q of %d bytes where %d are left", printable(typ), size, len(b))
		}
		if err := f(typ, b[h:size]); err != nil {
			return err
		}
		b = b[size:]
	}
	return nil // fewer than 8 bytes left: padding
}

// mp4Movie is the part of moov the source uses.
type mp4Movie struct {
	timescale  uint32
	tracks     []*mp4Track
	fragmented bool // mvex: the samples are in movie fragments
}

type mp4Track struct {
	id        uint32
	handler   string // "vide", "soun"
	timescale uint32
	edits     []mp4Edit
	hasEdits  bool
	entry     mp4SampleEntry
	table     mp4Table
}

// mp4Edit is one elst entry: duration in the movie's timescale, media
// time in the track's (-1: an empty edit), rate in 16.16 fixed point.
type mp4Edit struct {
	duration  uint64
	mediaTime int64
	rate      int32
}

// mp4SampleEntry is the first sample description of a track.
type mp4SampleEntry struct {
	format string // avc1, avc3, hvc1, hev1, mp4a, …
	config []byte // avcC, hvcC, or the AAC AudioSpecificConfig
	// objectType is the esds object type of audio (0x40: MPEG-4 audio).
	objectType byte
}

func parseMoov(moov []byte) (*mp4Movie, error) {
	m := &mp4Movie{}
	err := mp4Children(moov, func(typ string, b []byte) error {
		switch typ {
		case "mvhd":
			ts, err := headerTimescale(b)
			if err != nil {
				return fmt.Errorf("mvhd: %w", err)
			}
			m.timescale = ts
		case "mvex":
			m.fragmented = true
		case "trak":
			t, err := parseTrak(b)
			if err != nil {
				return err
			}
			m.tracks = append(m.tracks, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m.timescale == 0 {
		return nil, mp4Errorf("no movie header (mvhd) or a time scale of 0")
	}
	return m, nil
}

// headerTimescale reads the timescale of an mvhd or mdhd box.
func headerTimescale(b []byte) (uint32, error) {
	off := 12 // version+flags, creation and modification times
	if len(b) > 0 && b[0] == 1 {
		off = 20
	}
	if len(b) < off+4 {
		return 0, mp4Errorf("header of %d bytes", len(b))
	}
	return binary.BigEndian.Uint32(b[off:]), nil
}

func parseTrak(b []byte) (*mp4Track, error) {
	t := &mp4Track{}
	err := mp4Children(b, func(typ string, b []byte) error {
		switch typ {
		case "tkhd":
			off := 12
			if len(b) > 0 && b[0] == 1 {
				off = 20
			}
			if len(b) < off+4 {
				return mp4Errorf("tkhd of %d bytes", len(b))
			}
			t.id = binary.BigEndian.Uint32(b[off:])
		case "edts":
			return mp4Children(b, func(typ string, b []byte) error {
				if typ != "elst" {
					return nil
				}
				edits, err := parseElst(b)
				t.edits, t.hasEdits = edits, true
				return err
			})
		case "mdia":
			return parseMdia(b, t)
		}
		return nil
	})
	return t, err
}

// maxEdits bounds the edit list entries applied; each one is a pass over
// the track's index. Real files have one or two.
const maxEdits = 100

func parseElst(b []byte) ([]mp4Edit, error) {
	if len(b) < 8 {
		return nil, mp4Errorf("elst of %d bytes", len(b))
	}
	v1 := b[0] == 1
	n := uint64(binary.BigEndian.Uint32(b[4:]))
	size := uint64(12)
	if v1 {
		size = 20
	}
	b = b[8:]
	if n*size > uint64(len(b)) {
		return nil, mp4Errorf("elst with %d entries in %d bytes", n, len(b))
	}
	if n > maxEdits {
		return nil, mp4Errorf("an edit list of %d entries; kvsgo applies up to %d", n, maxEdits)
	}
	edits := make([]mp4Edit, n)
	for i := range edits {
		e := b[uint64(i)*size:]
		if v1 {
			edits[i] = mp4Edit{duration: binary.BigEndian.Uint64(e), mediaTime: int64(binary.BigEndian.Uint64(e[8:])), rate: int32(binary.BigEndian.Uint32(e[16:]))}
		} else {
			edits[i] = mp4Edit{duration: uint64(binary.BigEndian.Uint32(e)), mediaTime: int64(int32(binary.BigEndian.Uint32(e[4:]))), rate: int32(binary.BigEndian.Uint32(e[8:]))}
		}
	}
	return edits, nil
}

func parseMdia(b []byte, t *mp4Track) error {
	return mp4Children(b, func(typ string, b []byte) error {
		switch typ {
		case "mdhd":
			ts, err := headerTimescale(b)
			if err != nil {
				return fmt.Errorf("mdhd: %w", err)
			}
			t.timescale = ts
		case "hdlr":
			if len(b) < 12 {
				return mp4Errorf("hdlr of %d bytes", len(b))
			}
			t.handler = string(b[8:12])
		case "minf":
			return mp4Children(b, func(typ string, b []byte) error {
				if typ != "stbl" {
					return nil
				}
				return parseStbl(b, t)
			})
		}
		return nil
	})
}

func parseStbl(b []byte, t *mp4Track) error {
	tb := &t.table
	return mp4Children(b, func(typ string, b []byte) error {
		var err error
		switch typ {
		case "stsd":
			t.entry, err = parseStsd(b)
		case "stts":
			tb.stts, err = fullTable(b, 8)
		case "ctts":
			tb.ctts, err = fullTable(b, 8)
		case "stss":
			tb.stss, err = fullTable(b, 4)
			tb.hasStss = true
		case "stsc":
			tb.stsc, err = fullTable(b, 12)
		case "stco":
			tb.chunks, err = fullTable(b, 4)
			tb.chunkSize = 4
		case "co64":
			tb.chunks, err = fullTable(b, 8)
			tb.chunkSize = 8
		case "stsz":
			if len(b) < 12 {
				return mp4Errorf("stsz of %d bytes", len(b))
			}
			tb.constSize = binary.BigEndian.Uint32(b[4:])
			tb.count = binary.BigEndian.Uint32(b[8:])
			tb.sizeBits = 32
			if tb.constSize == 0 {
				tb.sizes = b[12:]
			}
		case "stz2":
			if len(b) < 12 {
				return mp4Errorf("stz2 of %d bytes", len(b))
			}
			tb.sizeBits = int(b[7])
			tb.count = binary.BigEndian.Uint32(b[8:])
			tb.sizes = b[12:]
			if tb.sizeBits != 4 && tb.sizeBits != 8 && tb.sizeBits != 16 {
				return mp4Errorf("stz2 field size %d", tb.sizeBits)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", typ, err)
		}
		return nil
	})
}

// fullTable returns the entries of a full box holding an entry count and
// entries of size bytes, checked against the box's length.
func fullTable(b []byte, size int) ([]byte, error) {
	if len(b) < 8 {
		return nil, mp4Errorf("table of %d bytes", len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b[4:]))
	b = b[8:]
	if n*uint64(size) > uint64(len(b)) {
		return nil, mp4Errorf("%d entries of %d bytes in %d bytes", n, size, len(b))
	}
	return b[:n*uint64(size)], nil
}

func parseStsd(b []byte) (mp4SampleEntry, error) {
	var e mp4SampleEntry
	if len(b) < 8 {
		return e, mp4Errorf("stsd of %d bytes", len(b))
	}
	found := false
	err := mp4Children(b[8:], func(typ string, b []byte) error {
		if found {
			return nil // one sample description is what kvsgo supports
		}
		found = true
		e.format = typ
		var children int
		switch typ {
		case "avc1", "avc3", "hvc1", "hev1":
			children = 78
		case "mp4a":
			children = 28
			if len(b) >= 10 {
				switch binary.BigEndian.Uint16(b[8:]) { // QuickTime sound description version
				case 1:
					children += 16
				case 2:
					children += 36
				}
			}
		default:
			return nil
		}
		if len(b) < children {
			return mp4Errorf("sample entry %q of %d bytes", printable(typ), len(b))
		}
		return mp4Children(b[children:], func(typ string, b []byte) error {
			switch typ {
			case "avcC", "hvcC":
				e.config = b
			case "esds":
				ot, asc, err := parseESDS(b)
				if err != nil {
					return fmt.Errorf("esds: %w", err)
				}
				e.objectType, e.config = ot, asc
			}
			return nil
		})
	})
	return e, err
}

// parseESDS returns the object type and decoder specific information (for
// AAC, the AudioSpecificConfig) of an elementary stream descriptor box
// (ISO/IEC 14496-1 7.2.6).
func parseESDS(b []byte) (byte, []byte, error) {
	if len(b) < 4 {
		return 0, nil, mp4Errorf("esds of %d bytes", len(b))
	}
	tag, es, err := descriptor(b[4:])
	if err != nil || tag != 3 || len(es) < 3 {
		return 0, nil, mp4Errorf("no ES descriptor")
	}
	flags := es[2]
	es = es[3:]
	skip := 0
	if flags&0x80 != 0 { // streamDependenceFlag
		skip += 2
	}
	if flags&0x40 != 0 { // URL_Flag
		if len(es) < 1 {
			return 0, nil, mp4Errorf("ES descriptor cut short")
		}
		skip += 1 + int(es[0])
	}
	if flags&0x20 != 0 { // OCRstreamFlag
		skip += 2
	}
	if len(es) < skip {
		return 0, nil, mp4Errorf("ES descriptor cut short")
	}
	tag, dc, err := descriptor(es[skip:])
	if err != nil || tag != 4 || len(dc) < 13 {
		return 0, nil, mp4Errorf("no decoder config descriptor")
	}
	tag, dsi, err := descriptor(dc[13:])
	if err != nil || tag != 5 {
		return dc[0], nil, nil
	}
	return dc[0], dsi, nil
}

// descriptor reads an MPEG-4 descriptor: a tag and an expandable size.
func descriptor(b []byte) (byte, []byte, error) {
	if len(b) < 2 {
		return 0, nil, mp4Errorf("descriptor cut short")
	}
	tag, size, i := b[0], 0, 1
	for ; i <= 4; i++ {
		if i >= len(b) {
			return 0, nil, mp4Errorf("descriptor cut short")
		}
		size = size<<7 | int(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			i++
			break
		}
	}
	if size > len(b)-i {
		return 0, nil, mp4Errorf("descriptor of %d bytes in %d", size, len(b)-i)
	}
	return tag, b[i : i+size], nil
}

// mp4Table is a track's sample table, its boxes' entries in place.
type mp4Table struct {
	stts, ctts, stss, stsc []byte
	hasStss                bool // without stss every sample is a sync sample
	chunks                 []byte
	chunkSize              int // 4 (stco) or 8 (co64)
	count                  uint32
	constSize              uint32
	sizes                  []byte
	sizeBits               int
}

// check makes sure the tables can describe count samples.
func (t *mp4Table) check(fileSize int64) error {
	if t.sizeBits == 0 {
		return mp4Errorf("no sample sizes (stsz)")
	}
	if t.constSize == 0 && uint64(t.count)*uint64(t.sizeBits) > uint64(len(t.sizes))*8 {
		return mp4Errorf("%d sample sizes in %d bytes", t.count, len(t.sizes))
	}
	if t.chunkSize == 0 || len(t.stsc) == 0 {
		if t.count == 0 {
			return nil
		}
		return mp4Errorf("no chunk table (stco/stsc)")
	}
	// Every sample takes at least a byte of the file: a larger count is a
	// corrupt index, and would take long to walk.
	if int64(t.count) > fileSize {
		return mp4Errorf("an index of %d samples in a file of %d bytes", t.count, fileSize)
	}
	return nil
}

func (t *mp4Table) size(i uint32) uint32 {
	switch t.sizeBits {
	case 32:
		if t.constSize != 0 {
			return t.constSize
		}
		return binary.BigEndian.Uint32(t.sizes[4*i:])
	case 16:
		return uint32(binary.BigEndian.Uint16(t.sizes[2*i:]))
	case 8:
		return uint32(t.sizes[i])
	default: // 4
		b := t.sizes[i/2]
		if i%2 == 0 {
			return uint32(b >> 4)
		}
		return uint32(b & 0xf)
	}
}

func (t *mp4Table) chunkOffset(i uint32) (int64, bool) {
	if uint64(i)*uint64(t.chunkSize) >= uint64(len(t.chunks)) {
		return 0, false
	}
	if t.chunkSize == 8 {
		o := binary.BigEndian.Uint64(t.chunks[8*i:])
		return int64(min(o, math.MaxInt64)), true
	}
	return int64(binary.BigEndian.Uint32(t.chunks[4*i:])), true
}

// mp4Sample is one sample as the index describes it, times in the
// track's timescale.
type mp4Sample struct {
	index    uint32
	dts, cts int64
	duration uint32
	offset   int64
	size     uint32
	sync     bool
}

// mp4Cursor walks a track's samples in decoding order.
type mp4Cursor struct {
	t         *mp4Table
	i         uint32 // the next sample
	dts       int64
	sttsI     int // entries consumed
	sttsLeft  uint32
	delta     uint32
	cttsI     int
	cttsLeft  uint32
	ctsOff    int32
	stssI     int
	chunk     int64 // the current chunk, -1 before the first
	chunkLeft uint32
	stscI     int
	off       int64
}

func newMP4Cursor(t *mp4Table) mp4Cursor { return mp4Cursor{t: t, chunk: -1} }

// errMP4Index is a sample table that runs out before its samples do.
var errMP4Index = errors.New("the MP4 index runs out of chunks before its samples end")

// next returns the next sample; false at the end of the track.
func (c *mp4Cursor) next() (mp4Sample, bool, error) {
	t := c.t
	if c.i >= t.count {
		return mp4Sample{}, false, nil
	}
	for c.chunkLeft == 0 {
		c.chunk++
		off, ok := t.chunkOffset(uint32(min(c.chunk, math.MaxUint32)))
		if !ok || c.chunk > math.MaxUint32 {
			return mp4Sample{}, false, fmt.Errorf("%w (sample %d of %d)", errMP4Index, c.i+1, t.count)
		}
		for c.stscI+1 < len(t.stsc)/12 && int64(binary.BigEndian.Uint32(t.stsc[12*(c.stscI+1):]))-1 <= c.chunk {
			c.stscI++
		}
		c.chunkLeft = binary.BigEndian.Uint32(t.stsc[12*c.stscI+4:])
		c.off = off
	}
	for c.sttsLeft == 0 && c.sttsI < len(t.stts)/8 {
		c.sttsLeft = binary.BigEndian.Uint32(t.stts[8*c.sttsI:])
		c.delta = binary.BigEndian.Uint32(t.stts[8*c.sttsI+4:])
		c.sttsI++
	}
	for c.cttsLeft == 0 && c.cttsI < len(t.ctts)/8 {
		c.cttsLeft = binary.BigEndian.Uint32(t.ctts[8*c.cttsI:])
		// Offsets are signed in version 1 and, in practice, in version 0.
		c.ctsOff = int32(binary.BigEndian.Uint32(t.ctts[8*c.cttsI+4:]))
		c.cttsI++
	}
	if c.cttsLeft == 0 {
		c.ctsOff = 0 // past the table
	}
	sync := !t.hasStss
	for !sync && c.stssI < len(t.stss)/4 {
		n := binary.BigEndian.Uint32(t.stss[4*c.stssI:])
		if n > c.i+1 {
			break
		}
		c.stssI++
		sync = n == c.i+1
	}
	s := mp4Sample{index: c.i, dts: c.dts, cts: satAdd(c.dts, int64(c.ctsOff)), duration: c.delta,
		offset: c.off, size: t.size(c.i), sync: sync}
	c.off = satAdd(c.off, int64(s.size))
	c.chunkLeft--
	if c.sttsLeft > 0 {
		c.sttsLeft--
	}
	if c.cttsLeft > 0 {
		c.cttsLeft--
	}
	c.dts = satAdd(c.dts, int64(c.delta))
	c.i++
	return s, true, nil
}

// satAdd adds, saturating instead of wrapping: a corrupt index must not
// turn a huge time into a negative one.
func satAdd(a, b int64) int64 {
	r := a + b
	switch {
	case a > 0 && b > 0 && r < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && r >= 0:
		return math.MinInt64
	}
	return r
}

func satSub(a, b int64) int64 {
	if b == math.MinInt64 {
		if a >= 0 {
			return math.MaxInt64
		}
		return a - b
	}
	return satAdd(a, -b)
}

// rescale converts d from one timescale to another, saturating.
func rescale(d uint64, from, to uint32) int64 {
	if from == 0 {
		return math.MaxInt64
	}
	hi, lo := bits.Mul64(d, uint64(to))
	if hi >= uint64(from) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(from))
	return int64(min(q, math.MaxInt64))
}

// mediaDuration converts t units of a timescale to a Duration, saturating.
func mediaDuration(t int64, scale uint32) time.Duration {
	if scale == 0 {
		return 0
	}
	s := int64(scale)
	sec, rem := t/s, t%s
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	switch {
	case sec > maxSec:
		return math.MaxInt64
	case sec < -maxSec:
		return math.MinInt64
	}
	return time.Duration(sec)*time.Second + time.Duration(rem*int64(time.Second)/s)
}
