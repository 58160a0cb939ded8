package mkv

import (
	"errors"
	"fmt"
	"io"
)

// EventType says what a demuxer Event reports.
type EventType uint8

// Demuxer events, in the order a stream produces them.
const (
	// EventEBML: an EBML header began: a new stream (a new PutMedia
	// connection, or the next GetMedia chunk) starts here.
	EventEBML EventType = iota + 1
	// EventHeader: Info and Tracks have been read; Event.Header holds them.
	EventHeader
	// EventCluster: a Cluster (a KVS fragment) began; Event.Timecode is
	// its timecode.
	EventCluster
	// EventBlock: a frame (or laced frames) of a track.
	EventBlock
	// EventClusterEnd: the Cluster ended at Event.Offset.
	EventClusterEnd
	// EventTags: a Tags element; Event.Tags holds its SimpleTags.
	EventTags
)

func (t EventType) String() string {
	switch t {
	case EventEBML:
		return "EBML"
	case EventHeader:
		return "Header"
	case EventCluster:
		return "Cluster"
	case EventBlock:
		return "Block"
	case EventClusterEnd:
		return "ClusterEnd"
	case EventTags:
		return "Tags"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one thing the Demuxer found. Slices in it are valid until the
// next call to Next.
type Event struct {
	Type EventType
	// Offset of the element the event is about; for EventClusterEnd and
	// the end of Tags, where the element ended.
	Offset int64
	// End is where the element ended (EventHeader: the end of Tracks;
	// EventTags: the end of Tags; EventClusterEnd: same as Offset;
	// EventBlock: the end of the SimpleBlock or BlockGroup).
	End int64
	// Depth of the element: 1 for children of the Segment.
	Depth  int
	Header *Header
	// Timecode: the cluster's timecode (EventCluster), or the block's
	// absolute timecode (EventBlock), in the stream's timecode units.
	Timecode int64
	Block    Block
	// Key reports a key frame (EventBlock).
	Key  bool
	Tags []SimpleTag
}

// MaxTagsPerElement bounds the SimpleTags the Demuxer collects from one
// Tags element, so that hostile input cannot grow memory without end.
const MaxTagsPerElement = 1024

type demuxCtx struct {
	id    ID
	depth int
	start int64
}

// Demuxer turns a Matroska stream into Events: headers, clusters, frames
// and tags. It is the one Matroska parser kvsgo has; the server's ingest and
// the Matroska source both use it.
type Demuxer struct {
	// BlockHeaders: blocks are reported from their headers alone (track,
	// timecode, flags), with no Frames, and their payloads are skipped
	// unread: for a caller that passes the bytes on rather than looks at
	// them. Laced blocks are still read whole, to check their lacing.
	BlockHeaders bool

	r *Reader

	open   []demuxCtx
	queue  []Event
	qhead  int
	header Header

	inCluster  bool
	haveTC     bool
	clusterTC  int64
	frames     [][]byte
	groupData  []byte
	groupRef   bool
	groupBlock bool
	groupHead  bool // groupData is the block's header only
	tags       []SimpleTag
	tagDepth   int // depth of the SimpleTags being collected
	done       bool
}

// NewDemuxer returns a Demuxer of r.
func NewDemuxer(r io.Reader) *Demuxer {
	return &Demuxer{r: NewReader(r)}
}

// NewDemuxerSource returns a Demuxer reading src without another buffer
// (see NewReaderSource).
func NewDemuxerSource(src Source) *Demuxer {
	return &Demuxer{r: NewReaderSource(src)}
}

// Reader returns the underlying element reader, e.g. to set limits.
func (d *Demuxer) Reader() *Reader { return d.r }

// Header returns the header of the current stream, as far as it was read.
func (d *Demuxer) Header() *Header { return &d.header }

// Next returns the next event, or io.EOF at the end of the input.
func (d *Demuxer) Next() (*Event, error) {
	for {
		if d.qhead < len(d.queue) {
			ev := &d.queue[d.qhead]
			d.qhead++
			return ev, nil
		}
		d.queue, d.qhead = d.queue[:0], 0
		if d.done {
			return nil, io.EOF
		}
		// A Cluster of known size is complete at its last byte: say so now,
		// not when the next element arrives.
		depth, err := d.r.PopEnded()
		if err != nil {
			return nil, err
		}
		if depth >= 0 {
			if err := d.closeTo(depth, d.r.Offset()); err != nil {
				return nil, err
			}
			continue
		}
		e, err := d.r.Next()
		if errors.Is(err, io.EOF) {
			d.done = true
			if err := d.closeTo(0, d.r.Offset()); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := d.closeTo(e.Depth, e.Offset); err != nil {
			return nil, err
		}
		if err := d.handle(e); err != nil {
			return nil, err
		}
	}
}

func (d *Demuxer) emit(ev Event) { d.queue = append(d.queue, ev) }

// closeTo ends the contexts at depth >= depth, deepest first.
func (d *Demuxer) closeTo(depth int, at int64) error {
	for len(d.open) > 0 && d.open[len(d.open)-1].depth >= depth {
		c := d.open[len(d.open)-1]
		d.open = d.open[:len(d.open)-1]
		switch c.id {
		case IDCluster:
			d.inCluster = false
			d.emit(Event{Type: EventClusterEnd, Offset: at, End: at, Depth: c.depth})
		case IDBlockGroup:
			if d.groupBlock {
				b, err := ParseBlock(d.groupData, d.frames)
				if err != nil {
					return err
				}
				d.frames = b.Frames
				if d.groupHead {
					b.Frames = nil
				}
				if err := d.emitBlock(b, !d.groupRef, c.start, at); err != nil {
					return err
				}
			}
		case IDTracks:
			h := d.header
			d.emit(Event{Type: EventHeader, Offset: c.start, End: at, Depth: c.depth, Header: &h})
		case IDTags:
			d.emit(Event{Type: EventTags, Offset: c.start, End: at, Depth: c.depth, Tags: d.tags})
		}
	}
	return nil
}

func (d *Demuxer) push(e Element) {
	d.open = append(d.open, demuxCtx{id: e.ID, depth: e.Depth, start: e.Offset})
}

func (d *Demuxer) emitBlock(b Block, key bool, offset, end int64) error {
	if !d.haveTC {
		return fmt.Errorf("%w: block before the cluster's timecode at offset %d", ErrInvalid, offset)
	}
	d.emit(Event{Type: EventBlock, Offset: offset, End: end, Timecode: d.clusterTC + int64(b.Timecode), Block: b, Key: key})
	return nil
}

// blockHeadSize is the most a block header takes: an 8-byte track number,
// the timecode and the flags.
const blockHeadSize = 8 + 2 + 1

// blockData returns what ParseBlock needs of the current block: with
// BlockHeaders, only its header when it is not laced (the payload is then
// skipped unread), and whether that is all.
func (d *Demuxer) blockData() (data []byte, head bool, err error) {
	if d.BlockHeaders {
		h, err := d.r.Head(blockHeadSize)
		if err != nil {
			return nil, false, err
		}
		if _, w, _, err := readVint(h); err == nil && len(h) >= w+3 && (h[w+2]>>1)&3 == 0 {
			return h[:w+3], true, nil
		}
	}
	data, err = d.r.Data()
	return data, false, err
}

func (d *Demuxer) lastTrack() (*Track, error) {
	if len(d.header.Tracks) == 0 {
		return nil, fmt.Errorf("%w: track field outside a TrackEntry", ErrInvalid)
	}
	return &d.header.Tracks[len(d.header.Tracks)-1], nil
}

func (d *Demuxer) handle(e Element) error {
	switch e.ID {
	case IDEBML:
		d.header = Header{}
		d.emit(Event{Type: EventEBML, Offset: e.Offset, Depth: e.Depth})
		return d.r.Skip()
	case IDInfo, IDTags, IDBlockGroup, IDTracks:
		d.push(e)
		switch e.ID {
		case IDTracks:
			d.header.Tracks = nil
		case IDTags:
			d.tags = nil
		case IDBlockGroup:
			d.groupRef, d.groupBlock, d.groupHead = false, false, false
		}
	case IDCluster:
		d.push(e)
		d.inCluster, d.haveTC = true, false
	case IDTrackEntry:
		if len(d.header.Tracks) >= 127 {
			return fmt.Errorf("%w: more than 127 tracks", ErrInvalid)
		}
		d.header.Tracks = append(d.header.Tracks, Track{})
	case IDSimpleTag:
		if e.Parent == IDTag {
			d.tagDepth = e.Depth
			if len(d.tags) >= MaxTagsPerElement {
				return fmt.Errorf("%w: more than %d tags in one Tags element", ErrInvalid, MaxTagsPerElement)
			}
			d.tags = append(d.tags, SimpleTag{})
		}
	case IDTimecode, IDSimpleBlock, IDBlock, IDReferenceBlock:
		return d.handleCluster(e)
	default:
		return d.handleLeaf(e)
	}
	return nil
}

func (d *Demuxer) handleCluster(e Element) error {
	switch {
	case e.ID == IDTimecode && e.Parent == IDCluster:
		v, err := d.uint()
		if err != nil {
			return err
		}
		d.clusterTC, d.haveTC = int64(v), true
		start := e.Offset
		if n := len(d.open); n > 0 && d.open[n-1].id == IDCluster {
			start = d.open[n-1].start
		}
		d.emit(Event{Type: EventCluster, Offset: start, Depth: e.Depth - 1, Timecode: d.clusterTC})
	case e.ID == IDSimpleBlock && e.Parent == IDCluster:
		data, head, err := d.blockData()
		if err != nil {
			return err
		}
		b, err := ParseBlock(data, d.frames)
		if err != nil {
			return err
		}
		d.frames = b.Frames
		if head {
			b.Frames = nil
		}
		return d.emitBlock(b, b.Key(), e.Offset, e.DataOffset()+e.Size)
	case e.ID == IDBlock && e.Parent == IDBlockGroup:
		data, head, err := d.blockData()
		if err != nil {
			return err
		}
		d.groupData = append(d.groupData[:0], data...)
		d.groupBlock, d.groupHead = true, head
	case e.ID == IDReferenceBlock && e.Parent == IDBlockGroup:
		d.groupRef = true
	}
	return nil
}

func (d *Demuxer) handleLeaf(e Element) error {
	switch e.Parent {
	case IDInfo:
		switch e.ID {
		case IDTimecodeScale:
			v, err := d.uint()
			if err != nil {
				return err
			}
			if v == 0 {
				return fmt.Errorf("%w: TimecodeScale 0", ErrInvalid)
			}
			d.header.TimecodeScale = v
		case IDSegmentUID:
			b, err := d.r.Data()
			if err != nil {
				return err
			}
			copy(d.header.SegmentUID[:], b)
		case IDTitle:
			return d.str(&d.header.Title)
		case IDMuxingApp:
			return d.str(&d.header.MuxingApp)
		case IDWritingApp:
			return d.str(&d.header.WritingApp)
		}
	case IDTrackEntry:
		t, err := d.lastTrack()
		if err != nil {
			return err
		}
		return d.trackField(t, e.ID)
	case IDVideo, IDAudio:
		t, err := d.lastTrack()
		if err != nil {
			return err
		}
		return d.trackMedia(t, e.ID)
	case IDSimpleTag:
		if len(d.tags) == 0 || e.Depth != d.tagDepth+1 {
			return nil // nested SimpleTags are not collected
		}
		t := &d.tags[len(d.tags)-1]
		switch e.ID {
		case IDTagName:
			return d.str(&t.Name)
		case IDTagString:
			return d.str(&t.Value)
		}
	}
	return nil
}

func (d *Demuxer) trackField(t *Track, id ID) error {
	switch id {
	case IDTrackNumber:
		v, err := d.uint()
		if v == 0 || v > 127 {
			return fmt.Errorf("%w: track number %d", ErrInvalid, v)
		}
		t.Number = v
		return err
	case IDTrackUID:
		v, err := d.uint()
		t.UID = v
		return err
	case IDTrackType:
		v, err := d.uint()
		t.Type = uint8(v)
		return err
	case IDName:
		return d.str(&t.Name)
	case IDCodecID:
		return d.str(&t.CodecID)
	case IDDefaultDuration:
		v, err := d.uint()
		t.DefaultDuration = v
		return err
	case IDCodecPrivate:
		b, err := d.r.Data()
		if err != nil {
			return err
		}
		t.CodecPrivate = append([]byte(nil), b...)
	}
	return nil
}

func (d *Demuxer) trackMedia(t *Track, id ID) error {
	switch id {
	case IDPixelWidth:
		v, err := d.uint()
		t.Width = uint16(min(v, 0xffff))
		return err
	case IDPixelHeight:
		v, err := d.uint()
		t.Height = uint16(min(v, 0xffff))
		return err
	case IDSamplingFrequency:
		b, err := d.r.Data()
		if err != nil {
			return err
		}
		t.SamplingFrequency, err = readFloat(b)
		return err
	case IDChannels:
		v, err := d.uint()
		t.Channels = uint8(min(v, 0xff))
		return err
	case IDBitDepth:
		v, err := d.uint()
		t.BitDepth = uint8(min(v, 0xff))
		return err
	}
	return nil
}

func (d *Demuxer) uint() (uint64, error) {
	b, err := d.r.Data()
	if err != nil {
		return 0, err
	}
	return readUint(b)
}

func (d *Demuxer) str(dst *string) error {
	b, err := d.r.Data()
	if err != nil {
		return err
	}
	// Matroska strings may be zero-padded.
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	*dst = string(b)
	return nil
}
