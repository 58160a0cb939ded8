// Package mkv reads and writes Matroska streams the way Amazon Kinesis Video
// Streams uses them: one EBML header and a Segment of unknown size per
// connection, a Cluster per fragment starting with a key frame, SimpleBlocks
// with 16-bit relative timecodes, and Tags for fragment metadata.
//
// The Writer emits exactly the byte layout of the KVS producer SDK (fixed
// size-field widths included), with no allocations per frame once warm. The
// Reader is a pull parser with bounded memory that copes with unknown sizes
// and every vint width, for live network input.
package mkv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ID is an EBML element ID with its length marker bits, as written.
type ID uint32

// Element IDs used by kvsgo (Matroska specification, RFC 9559).
const (
	IDEBML               ID = 0x1A45DFA3
	IDEBMLVersion        ID = 0x4286
	IDEBMLReadVersion    ID = 0x42F7
	IDEBMLMaxIDLength    ID = 0x42F2
	IDEBMLMaxSizeLength  ID = 0x42F3
	IDDocType            ID = 0x4282
	IDDocTypeVersion     ID = 0x4287
	IDDocTypeReadVersion ID = 0x4285
	IDVoid               ID = 0xEC
	IDCRC32              ID = 0xBF

	IDSegment       ID = 0x18538067
	IDSeekHead      ID = 0x114D9B74
	IDInfo          ID = 0x1549A966
	IDSegmentUID    ID = 0x73A4
	IDTimecodeScale ID = 0x2AD7B1
	IDDuration      ID = 0x4489
	IDTitle         ID = 0x7BA9
	IDMuxingApp     ID = 0x4D80
	IDWritingApp    ID = 0x5741

	IDTracks            ID = 0x1654AE6B
	IDTrackEntry        ID = 0xAE
	IDTrackNumber       ID = 0xD7
	IDTrackUID          ID = 0x73C5
	IDTrackType         ID = 0x83
	IDName              ID = 0x536E
	IDCodecID           ID = 0x86
	IDCodecPrivate      ID = 0x63A2
	IDDefaultDuration   ID = 0x23E383
	IDVideo             ID = 0xE0
	IDPixelWidth        ID = 0xB0
	IDPixelHeight       ID = 0xBA
	IDAudio             ID = 0xE1
	IDSamplingFrequency ID = 0xB5
	IDChannels          ID = 0x9F
	IDBitDepth          ID = 0x6264

	IDCluster        ID = 0x1F43B675
	IDTimecode       ID = 0xE7
	IDPosition       ID = 0xA7
	IDPrevSize       ID = 0xAB
	IDSimpleBlock    ID = 0xA3
	IDBlockGroup     ID = 0xA0
	IDBlock          ID = 0xA1
	IDBlockDuration  ID = 0x9B
	IDReferenceBlock ID = 0xFB

	IDCues        ID = 0x1C53BB6B
	IDChapters    ID = 0x1043A770
	IDAttachments ID = 0x1941A469

	IDTags      ID = 0x1254C367
	IDTag       ID = 0x7373
	IDTargets   ID = 0x63C0
	IDSimpleTag ID = 0x67C8
	IDTagName   ID = 0x45A3
	IDTagString ID = 0x4487
	IDTagBinary ID = 0x4485
)

// UnknownSize is the Size of an element whose size field is all ones.
const UnknownSize = -1

// Errors the reader and writer return.
var (
	ErrInvalid        = errors.New("invalid Matroska data")
	ErrTooLarge       = errors.New("element larger than the limit")
	ErrNeedKeyFrame   = errors.New("a fragment must start with a key frame")
	ErrBlockTimecode  = errors.New("frame timecode outside the 16-bit range of its cluster")
	ErrUnknownTrack   = errors.New("frame for a track not in the header")
	ErrTimecodeOrder  = errors.New("cluster timecode lower than the previous one")
	ErrHeaderNotFirst = errors.New("header must be written before frames")
)

// parentOf returns the parent an element must have (0: top level), and
// whether the schema knows it. The position of a known element closes any
// unknown-size element it cannot be a child of; an element not known here is
// taken to belong to the element it appears in.
func parentOf(id ID) (ID, bool) {
	switch id {
	case IDEBML, IDSegment:
		return 0, true
	case IDSeekHead, IDInfo, IDTracks, IDCluster, IDCues, IDChapters, IDAttachments, IDTags:
		return IDSegment, true
	case IDTrackEntry:
		return IDTracks, true
	case IDVideo, IDAudio:
		return IDTrackEntry, true
	case IDBlockGroup, IDTimecode, IDSimpleBlock, IDPosition, IDPrevSize:
		return IDCluster, true
	case IDTag:
		return IDTags, true
	case IDTargets, IDSimpleTag:
		return IDTag, true
	}
	return 0, false
}

// isMaster reports whether the reader descends into id.
func isMaster(id ID) bool {
	switch id {
	case IDEBML, IDSegment, IDSeekHead, IDInfo, IDTracks, IDCluster, IDCues, IDChapters,
		IDAttachments, IDTags, IDTrackEntry, IDVideo, IDAudio, IDBlockGroup, IDTag, IDTargets, IDSimpleTag:
		return true
	}
	return false
}

// appendID appends an element ID as written (its marker bits included).
func appendID(dst []byte, id ID) []byte {
	switch {
	case id >= 1<<24:
		return append(dst, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		return append(dst, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		return append(dst, byte(id>>8), byte(id))
	}
	return append(dst, byte(id))
}

// appendSize appends n as a vint of exactly width bytes (1..8), the way
// the KVS SDK fixes size widths per element.
func appendSize(dst []byte, n uint64, width int) []byte {
	marker := uint64(1) << (7 * width)
	v := n | marker
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// vintWidth returns the smallest width that holds n (all-ones is reserved).
func vintWidth(n uint64) int {
	for w := 1; w < 8; w++ {
		if n < 1<<(7*w)-1 {
			return w
		}
	}
	return 8
}

// appendUint appends an unsigned integer element with a 1-byte size field,
// using as many bytes as the value needs.
func appendUint(dst []byte, id ID, v uint64) []byte {
	n := 1
	for n < 8 && v>>(8*n) != 0 {
		n++
	}
	dst = appendID(dst, id)
	dst = appendSize(dst, uint64(n), 1)
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// appendUintN appends an unsigned integer element of exactly n bytes.
func appendUintN(dst []byte, id ID, v uint64, n int) []byte {
	dst = appendID(dst, id)
	dst = appendSize(dst, uint64(n), 1)
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// appendBytes appends a binary or string element with a minimal size field.
func appendBytes(dst []byte, id ID, b []byte) []byte {
	dst = appendID(dst, id)
	dst = appendSize(dst, uint64(len(b)), vintWidth(uint64(len(b))))
	return append(dst, b...)
}

func appendString(dst []byte, id ID, s string) []byte {
	dst = appendID(dst, id)
	dst = appendSize(dst, uint64(len(s)), vintWidth(uint64(len(s))))
	return append(dst, s...)
}

// readVint decodes a vint from b: its value (marker removed), its width,
// and whether it is the all-ones "unknown" value.
func readVint(b []byte) (v uint64, width int, unknown bool, err error) {
	if len(b) == 0 {
		return 0, 0, false, fmt.Errorf("%w: empty vint", ErrInvalid)
	}
	first := b[0]
	if first == 0 {
		return 0, 0, false, fmt.Errorf("%w: vint wider than 8 bytes", ErrInvalid)
	}
	width = 1
	for mask := byte(0x80); first&mask == 0; mask >>= 1 {
		width++
	}
	if len(b) < width {
		return 0, width, false, errShort
	}
	v = uint64(first & (0xff >> width))
	allOnes := v == uint64(0xff>>width)
	for _, c := range b[1:width] {
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xff
	}
	return v, width, allOnes, nil
}

var errShort = errors.New("short buffer")

// readID decodes an element ID (1 to 4 bytes, marker kept).
func readID(b []byte) (ID, int, error) {
	if len(b) == 0 {
		return 0, 0, errShort
	}
	first := b[0]
	width := 1
	for mask := byte(0x80); first&mask == 0; mask >>= 1 {
		width++
		if width > 4 {
			return 0, 0, fmt.Errorf("%w: element ID starts with 0x%02x", ErrInvalid, first)
		}
	}
	if len(b) < width {
		return 0, width, errShort
	}
	var id uint32
	for _, c := range b[:width] {
		id = id<<8 | uint32(c)
	}
	return ID(id), width, nil
}

// readUint decodes a big-endian unsigned integer element body.
func readUint(b []byte) (uint64, error) {
	if len(b) > 8 {
		return 0, fmt.Errorf("%w: integer of %d bytes", ErrInvalid, len(b))
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// readFloat decodes a 4- or 8-byte float element body.
func readFloat(b []byte) (float64, error) {
	switch len(b) {
	case 0:
		return 0, nil
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("%w: float of %d bytes", ErrInvalid, len(b))
}
