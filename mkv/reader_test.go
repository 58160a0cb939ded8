package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

type walkResult struct {
	streams, clusters, blocks int
	awsTags                   map[string]int
	codec                     string
	width, height             uint16
	err                       error
}

func walk(r io.Reader) walkResult {
	res := walkResult{awsTags: map[string]int{}}
	d := NewDemuxer(r)
	open := false
	for {
		ev, err := d.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			return res
		}
		switch ev.Type {
		case EventEBML:
			res.streams++
		case EventHeader:
			t := ev.Header.Tracks[0]
			res.codec, res.width, res.height = t.CodecID, t.Width, t.Height
		case EventCluster:
			if open {
				res.err = errors.New("cluster inside a cluster")
				return res
			}
			open = true
			res.clusters++
		case EventClusterEnd:
			open = false
		case EventBlock:
			if !open {
				res.err = errors.New("block outside a cluster")
				return res
			}
			res.blocks++
		case EventTags:
			for _, t := range ev.Tags {
				if strings.HasPrefix(t.Name, "AWS_KINESISVIDEO_") {
					res.awsTags[strings.TrimPrefix(t.Name, "AWS_KINESISVIDEO_")]++
				}
			}
		}
	}
}

// TestReaderOnServiceCaptures walks real GetMedia output of the AWS service
// and kvssink's PutMedia body. Block counts are checked against mkvinfo too.
func TestReaderOnServiceCaptures(t *testing.T) {
	perFragment := func(n int) map[string]int {
		return map[string]int{"FRAGMENT_NUMBER": n, "SERVER_TIMESTAMP": n, "PRODUCER_TIMESTAMP": n, "MILLIS_BEHIND_NOW": n, "CONTINUATION_TOKEN": n}
	}
	cases := []struct {
		file                      string
		streams, clusters, blocks int
		codec                     string
		w, h                      uint16
		tags                      map[string]int
		truncated                 bool
	}{
		{"kvs-captures/output_get_media.mkv", 5, 5, 300, "V_MPEG4/ISO/AVC", 640, 360, perFragment(5), false},
		{"kvs-captures/kinesis_video_renderer_example_output.mkv", 8, 8, 444, "V_MPEG4/ISO/AVC", 640, 480, perFragment(8), false},
		{"kvs-captures/test_mixed_tags.mkv", 10, 10, 100, "V_MS/VFW/FOURCC", 640, 480, perFragment(10), false},
		{"kvs-captures/clusters.mkv", 1, 8, 444, "V_MPEG4/ISO/AVC", 640, 480, map[string]int{}, false},
		// Cut off inside its second fragment by whoever saved it.
		{"kvs-captures/output-get-media-equal-timecode.mkv", 2, 2, 239, "V_MPEG4/ISO/AVC", 1280, 674,
			map[string]int{"FRAGMENT_NUMBER": 2, "SERVER_TIMESTAMP": 2, "PRODUCER_TIMESTAMP": 2, "MILLIS_BEHIND_NOW": 1, "CONTINUATION_TOKEN": 1}, true},
		{"kvssink-capture/04_putMedia.body", 1, 12, 300, "V_MPEG4/ISO/AVC", 640, 480, map[string]int{"END_OF_FRAGMENT": 1}, false},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := mediatest.Reference(t, c.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res := walk(bytes.NewReader(data))
			if c.truncated {
				if !errors.Is(res.err, io.ErrUnexpectedEOF) {
					t.Fatalf("truncated file: err = %v, want io.ErrUnexpectedEOF", res.err)
				}
			} else if res.err != nil {
				t.Fatal(res.err)
			}
			if res.streams != c.streams || res.clusters != c.clusters || res.blocks != c.blocks {
				t.Errorf("%d streams, %d clusters, %d blocks; want %d, %d, %d", res.streams, res.clusters, res.blocks, c.streams, c.clusters, c.blocks)
			}
			if res.codec != c.codec || res.width != c.w || res.height != c.h {
				t.Errorf("track %s %dx%d, want %s %dx%d", res.codec, res.width, res.height, c.codec, c.w, c.h)
			}
			if len(res.awsTags) != len(c.tags) {
				t.Errorf("tags %v, want %v", res.awsTags, c.tags)
			}
			for k, v := range c.tags {
				if res.awsTags[k] != v {
					t.Errorf("tag %s seen %d times, want %d", k, res.awsTags[k], v)
				}
			}
			// mkvinfo, an independent parser, counts the same frames.
			// It exits 1 on the files with one EBML header per fragment:
			// a warning, as it reads only the first Segment's header.
			out, code, stderr := mediatest.Exec(t, nil, "mkvinfo", "-s", path)
			if code > 1 {
				t.Fatalf("mkvinfo: exit %d: %s", code, stderr)
			}
			if n := strings.Count(string(out), " frame, track "); n != c.blocks {
				t.Errorf("mkvinfo counts %d frames, the reader %d", n, c.blocks)
			}
			// Any read size gives the same result.
			small := walk(iotest.OneByteReader(bytes.NewReader(data)))
			if small.blocks != res.blocks || small.clusters != res.clusters {
				t.Errorf("one-byte reads: %d blocks, %d clusters", small.blocks, small.clusters)
			}
		})
	}
}

// element builds an element with its size field width bytes wide.
func element(id ID, width int, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	out := appendID(nil, id)
	out = appendSize(out, uint64(len(b)), width)
	return append(out, b...)
}

func unknown(id ID, body ...[]byte) []byte {
	out := appendID(nil, id)
	out = append(out, 0xff)
	for _, p := range body {
		out = append(out, p...)
	}
	return out
}

func TestReaderSizesAndUnknownSizes(t *testing.T) {
	for width := 1; width <= 8; width++ {
		block := element(IDSimpleBlock, width, []byte{0x81, 0, 5, 0x80, 0xde, 0xad})
		tc := element(IDTimecode, width, []byte{0x03, 0xe8})
		var stream []byte
		stream = append(stream, ebmlHeader[:]...)
		stream = append(stream, unknown(IDSegment,
			element(IDInfo, width, element(IDTimecodeScale, width, []byte{0x0f, 0x42, 0x40})),
			element(IDTracks, width, element(IDTrackEntry, width,
				element(IDTrackNumber, width, []byte{1}), element(IDCodecID, width, []byte("V_MPEG4/ISO/AVC")))),
			unknown(IDCluster, tc, block, block),
			element(IDCluster, width, tc, block),
			unknown(IDCluster, tc, block),
			element(IDTags, width, element(IDTag, width, element(IDSimpleTag, width,
				element(IDTagName, width, []byte("N")), element(IDTagString, width, []byte("V"))))),
		)...)
		var types []EventType
		var blocks []int64
		d := NewDemuxer(bytes.NewReader(stream))
		for {
			ev, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("width %d: %v", width, err)
			}
			types = append(types, ev.Type)
			if ev.Type == EventBlock {
				blocks = append(blocks, ev.Timecode)
				if !bytes.Equal(ev.Block.Frames[0], []byte{0xde, 0xad}) || !ev.Key {
					t.Fatalf("width %d: block %+v", width, ev.Block)
				}
			}
			if ev.Type == EventTags && (ev.Tags[0].Name != "N" || ev.Tags[0].Value != "V") {
				t.Fatalf("width %d: tags %+v", width, ev.Tags)
			}
		}
		want := []EventType{EventEBML, EventHeader,
			EventCluster, EventBlock, EventBlock, EventClusterEnd,
			EventCluster, EventBlock, EventClusterEnd,
			EventCluster, EventBlock, EventClusterEnd, EventTags}
		if len(types) != len(want) {
			t.Fatalf("width %d: events %v, want %v", width, types, want)
		}
		for i := range want {
			if types[i] != want[i] {
				t.Fatalf("width %d: events %v, want %v", width, types, want)
			}
		}
		for _, tc := range blocks {
			if tc != 1005 {
				t.Fatalf("width %d: block timecode %d, want 1005", width, tc)
			}
		}
	}
}

func TestReaderRejectsBadInput(t *testing.T) {
	good := element(IDCluster, 4, element(IDTimecode, 1, []byte{1}), element(IDSimpleBlock, 1, []byte{0x81, 0, 0, 0x80, 1}))
	cases := map[string][]byte{
		"truncated known size":   good[:len(good)-2],
		"child overruns parent":  element(IDCluster, 1, element(IDTimecode, 1, []byte{1, 2, 3})[:4]),
		"unknown-size leaf":      append(appendID(nil, IDSimpleBlock), 0xff, 1, 2),
		"vint wider than 8":      {0x1f, 0x43, 0xb6, 0x75, 0x00, 1},
		"id wider than 4":        {0x08, 1, 2, 3, 4, 0x81, 0},
		"block before timecode":  element(IDCluster, 4, element(IDSimpleBlock, 1, []byte{0x81, 0, 0, 0x80, 1})),
		"too deep":               deep(20),
		"track number 0":         element(IDTracks, 1, element(IDTrackEntry, 1, element(IDTrackNumber, 1, []byte{0}))),
		"truncated header bytes": {0x1a, 0x45},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			res := walk(bytes.NewReader(data))
			if res.err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(res.err, ErrInvalid) && !errors.Is(res.err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want ErrInvalid or io.ErrUnexpectedEOF", res.err)
			}
		})
	}
	// A body over the limit is refused without being read into memory.
	big := element(IDCodecPrivate, 4, make([]byte, 2<<20))
	r := NewReader(bytes.NewReader(big))
	r.MaxElementSize = 1 << 20
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Data(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
}

func deep(n int) []byte {
	b := element(IDTimecode, 1, []byte{1})
	for range n {
		b = unknown(IDBlockGroup, b)
	}
	return b
}

func TestParseBlockLacing(t *testing.T) {
	head := func(flags byte) []byte { return []byte{0x82, 0x00, 0x10, flags} }
	a, b, c := bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 4), bytes.Repeat([]byte{3}, 7)
	cases := map[string][]byte{
		"xiph":  append(append(head(0x02), 2, 255, 45, 4), append(append(append([]byte(nil), a...), b...), c...)...),
		"fixed": append(append(head(0x04), 2), bytes.Repeat([]byte{9}, 12)...),
	}
	// EBML lacing: first size 300 as a 2-byte vint (0x412c), then the
	// difference 4-300 = -296 as a signed 2-byte vint: -296 + 8191 = 7895 = 0x5ed7.
	cases["ebml"] = append(append(head(0x06), 2, 0x41, 0x2c, 0x5e, 0xd7), append(append(append([]byte(nil), a...), b...), c...)...)
	for name, data := range cases {
		blk, err := ParseBlock(data, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if blk.Track != 2 || blk.Timecode != 16 || len(blk.Frames) != 3 {
			t.Fatalf("%s: %+v", name, blk)
		}
		if name == "fixed" {
			continue
		}
		if !bytes.Equal(blk.Frames[0], a) || !bytes.Equal(blk.Frames[1], b) || !bytes.Equal(blk.Frames[2], c) {
			t.Fatalf("%s: frames of %d, %d, %d bytes", name, len(blk.Frames[0]), len(blk.Frames[1]), len(blk.Frames[2]))
		}
	}
	if _, err := ParseBlock(append(head(0x02), 5, 255), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("truncated lacing: %v", err)
	}
}

// TestLiveEndOfFragment: the END_OF_FRAGMENT tag is reported while the
// sender keeps the connection open (as the KVS SDK does, waiting for its
// last PERSISTED ack).
func TestLiveEndOfFragment(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	events := make(chan EventType, 16)
	go func() {
		defer close(events)
		d := NewDemuxer(pr)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			events <- ev.Type
		}
	}()
	w, _ := NewWriter(pw, goldenHeader())
	must(t, w.WriteFrame(1, 0, true, []byte{0, 0, 0, 1, 0x65}))
	must(t, w.EndFragment())
	want := []EventType{EventEBML, EventHeader, EventCluster, EventBlock, EventClusterEnd, EventTags}
	for i, wt := range want {
		select {
		case got := <-events:
			if got != wt {
				t.Fatalf("event %d: %v, want %v", i, got, wt)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%v) not reported while the sender waits", i, wt)
		}
	}
}

func TestUnknownSizeInsideKnownSize(t *testing.T) {
	tc := element(IDTimecode, 1, []byte{1})
	blk := element(IDSimpleBlock, 1, []byte{0x81, 0, 0, 0x80, 7})
	seg := element(IDSegment, 8,
		element(IDTracks, 1, element(IDTrackEntry, 1, element(IDTrackNumber, 1, []byte{1}))),
		unknown(IDCluster, tc, blk), unknown(IDCluster, tc, blk))
	stream := append(append(append([]byte(nil), ebmlHeader[:]...), seg...), ebmlHeader[:]...)
	res := walk(bytes.NewReader(stream))
	if res.err != nil || res.clusters != 2 || res.blocks != 2 || res.streams != 2 {
		t.Fatalf("%+v", res)
	}
}

func TestNestedSimpleTagsAndSingleLace(t *testing.T) {
	inner := element(IDSimpleTag, 1, element(IDTagName, 1, []byte("B")), element(IDTagString, 1, []byte("2")))
	tags := element(IDTags, 1, element(IDTag, 1, element(IDSimpleTag, 1,
		element(IDTagName, 1, []byte("A")), element(IDTagString, 1, []byte("1")), inner)))
	d := NewDemuxer(bytes.NewReader(tags))
	ev, err := d.Next()
	if err != nil || ev.Type != EventTags || len(ev.Tags) != 1 || ev.Tags[0] != (SimpleTag{"A", "1"}) {
		t.Fatalf("%+v %v", ev, err)
	}
	b, err := ParseBlock([]byte{0x81, 0, 0, 0x06, 0x00, 0xaa, 0xbb}, nil)
	if err != nil || len(b.Frames) != 1 || !bytes.Equal(b.Frames[0], []byte{0xaa, 0xbb}) {
		t.Fatalf("single-frame EBML lace: %+v %v", b, err)
	}
}
