package mkv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// goldenCPD is the 29-byte avcC of ../shared/reference/mkvgen-golden.mkv.
var goldenCPD = []byte{
	0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x0e, 0x27, 0x64, 0x00, 0x28, 0xac, 0x2b, 0x40,
	0x50, 0x1e, 0xd0, 0x0f, 0x12, 0x26, 0xa0, 0x01, 0x00, 0x04, 0x28, 0xee, 0x1f, 0x2c,
}

func goldenHeader() Header {
	h := Header{Tracks: []Track{{
		Number: 1, UID: 1, Type: TrackTypeVideo, Name: "kinesis_video",
		CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: goldenCPD, Width: 640, Height: 480,
	}}}
	for i := range h.SegmentUID {
		h.SegmentUID[i] = byte(i)
	}
	return h
}

// TestWriterMatchesSDKGolden: header and first frame byte for byte as the
// KVS producer SDK's templates lay them out.
func TestWriterMatchesSDKGolden(t *testing.T) {
	golden, err := os.ReadFile(mediatest.Reference(t, "mkvgen-golden.mkv"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, goldenHeader())
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte{0, 0, 0, 5, 0x65, 'A', 'B', 'C', 'D'}
	if err := w.WriteFrame(1, 1704067200000*time.Millisecond, true, frame); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), golden) {
		t.Fatalf("writer output differs from the golden vector\n got %x\nwant %x", buf.Bytes(), golden)
	}
}

// TestEndOfFragmentLayout: the 84-byte END_OF_FRAGMENT Tags the SDK sends,
// as found at the end of the recorded kvssink session.
func TestEndOfFragmentLayout(t *testing.T) {
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, goldenHeader())
	if err := w.WriteFrame(1, 0, true, []byte{0, 0, 0, 1, 0x65}); err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	if err := w.EndFragment(); err != nil {
		t.Fatal(err)
	}
	eof := buf.Bytes()[n:]
	if len(eof) != 84 || !bytes.HasSuffix(body, eof) {
		t.Fatalf("END_OF_FRAGMENT tags (%d bytes) %x are not the tail of kvssink's stream", len(eof), eof)
	}
	if err := w.WriteFrame(1, time.Second, false, []byte{0, 0, 0, 1, 0x41}); !errors.Is(err, ErrNeedKeyFrame) {
		t.Fatalf("delta frame after the end of a fragment: %v", err)
	}
}

// TestHeaderMatchesKVSSink: the header kvsgo writes for kvssink's track is
// the header kvssink sent, but for the random SegmentUID.
func TestHeaderMatchesKVSSink(t *testing.T) {
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDemuxer(bytes.NewReader(body))
	var h *Header
	var end int64
	for h == nil {
		ev, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == EventHeader {
			h, end = ev.Header, ev.End
		}
	}
	got, err := AppendHeader(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body[:end]) {
		t.Fatalf("header differs from kvssink's\n got %x\nwant %x", got, body[:end])
	}
}

func TestWriterErrors(t *testing.T) {
	w, _ := NewWriter(io.Discard, goldenHeader())
	if err := w.WriteFrame(1, 0, false, []byte{1}); !errors.Is(err, ErrNeedKeyFrame) {
		t.Fatalf("first frame not a key frame: %v", err)
	}
	if err := w.WriteFrame(2, 0, true, []byte{1}); !errors.Is(err, ErrUnknownTrack) {
		t.Fatalf("unknown track: %v", err)
	}
	if err := w.WriteFrame(1, 10*time.Second, true, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(1, 43*time.Second, false, []byte{1}); !errors.Is(err, ErrBlockTimecode) {
		t.Fatalf("33 s after the cluster: %v", err)
	}
	if err := w.WriteFrame(1, 9*time.Second, false, []byte{1}); !errors.Is(err, ErrBlockTimecode) {
		t.Fatalf("before the cluster: %v", err)
	}
	if err := w.WriteFrame(1, 5*time.Second, true, []byte{1}); !errors.Is(err, ErrTimecodeOrder) {
		t.Fatalf("cluster going backwards: %v", err)
	}
	if _, err := NewWriter(io.Discard, Header{}); err == nil {
		t.Fatal("header without tracks accepted")
	}
}

func TestWriterFragmentTagsAndAudio(t *testing.T) {
	h := goldenHeader()
	h.Tracks = append(h.Tracks, Track{Number: 2, UID: 2, Type: TrackTypeAudio, CodecID: "A_AAC",
		CodecPrivate: []byte{0x11, 0x90}, SamplingFrequency: 48000, Channels: 1})
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, h)
	if err := w.WriteFrame(2, 0, true, []byte{1}); !errors.Is(err, ErrNeedKeyFrame) {
		t.Fatalf("audio before the first video key frame: %v", err)
	}
	w.AddFragmentTag("camera", "porch")
	must(t, w.WriteFrame(1, 1000*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65}))
	must(t, w.WriteFrame(2, 1010*time.Millisecond, true, []byte{0xaa}))
	must(t, w.WriteFrame(1, 1033*time.Millisecond, false, []byte{0, 0, 0, 1, 0x41}))
	must(t, w.WriteFrame(1, 2000*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65}))

	var got []string
	d := NewDemuxer(&buf)
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		switch ev.Type {
		case EventHeader:
			a := ev.Header.Tracks[1]
			if a.SamplingFrequency != 48000 || a.Channels != 1 || a.CodecID != "A_AAC" {
				t.Fatalf("audio track read back as %+v", a)
			}
			got = append(got, "header")
		case EventTags:
			got = append(got, "tag:"+ev.Tags[0].Name+"="+ev.Tags[0].Value)
		case EventCluster:
			got = append(got, "cluster")
		case EventBlock:
			got = append(got, string(rune('0'+ev.Block.Track)))
		case EventClusterEnd:
			got = append(got, "end")
		}
	}
	want := []string{"header", "tag:camera=porch", "cluster", "1", "2", "1", "end", "cluster", "1", "end"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

func TestWriterAllocatesNothingPerFrame(t *testing.T) {
	w, _ := NewWriter(io.Discard, goldenHeader())
	frame := make([]byte, 20000)
	var pts time.Duration
	key := true
	step := func() {
		if err := w.WriteFrame(1, pts, key, frame); err != nil {
			t.Fatal(err)
		}
		pts += 33 * time.Millisecond
		key = pts%(time.Second) < 33*time.Millisecond
	}
	for range 100 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

// TestWriterExplicitClusters: a cluster can start before its key frame
// (at the earliest time of the key frame and its leading pictures, or with
// audio that precedes it), every block is at or after its cluster's
// timecode, and each frame is still a single Write.
func TestWriterExplicitClusters(t *testing.T) {
	h := goldenHeader()
	h.Tracks = append(h.Tracks, Track{Number: 2, Type: TrackTypeAudio, CodecID: "A_AAC", CodecPrivate: []byte{0x11, 0x90}, SamplingFrequency: 48000, Channels: 1})
	out := &countingWriter{}
	w, _ := NewWriter(out, h)
	must(t, w.WriteHeader())
	if err := w.WriteBlock(1, epoch, true, []byte{1}); !errors.Is(err, ErrNeedKeyFrame) {
		t.Fatalf("a block before any cluster: %v", err)
	}
	ms := time.Millisecond
	must(t, w.StartCluster(epoch+990*ms))                             // audio first
	must(t, w.WriteBlock(2, epoch+990*ms, true, []byte{0xa1}))        // rel 0
	must(t, w.WriteBlock(1, epoch+1066*ms, true, []byte{0, 0, 0, 1})) // key frame shown after its leading pictures
	must(t, w.WriteBlock(1, epoch+1000*ms, false, []byte{0, 0, 0, 2}))
	must(t, w.WriteBlock(1, epoch+1033*ms, false, []byte{0, 0, 0, 3}))
	if err := w.WriteBlock(2, epoch+989*ms, true, []byte{0xa2}); !errors.Is(err, ErrBlockTimecode) {
		t.Fatalf("a block before its cluster: %v", err)
	}
	if err := w.StartCluster(epoch + 990*ms); !errors.Is(err, ErrTimecodeOrder) {
		t.Fatalf("a cluster not after the previous one: %v", err)
	}
	w.AddFragmentTag("camera", "porch")
	must(t, w.StartCluster(epoch+2000*ms))
	must(t, w.WriteBlock(1, epoch+2000*ms, true, []byte{0, 0, 0, 4}))
	must(t, w.StartCluster(epoch+3000*ms)) // nothing written in it
	must(t, w.EndFragment())
	if out.writes != 1+5+1 {
		t.Fatalf("%d writes for a header, 5 frames and the end tag", out.writes)
	}
	type blk struct {
		track uint64
		tc    int64
	}
	var clusters []int64
	var blocks []blk
	var tags []string
	d := NewDemuxer(bytes.NewReader(out.Bytes()))
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		switch ev.Type {
		case EventCluster:
			clusters = append(clusters, ev.Timecode)
		case EventBlock:
			blocks = append(blocks, blk{ev.Block.Track, ev.Timecode})
			if ev.Block.Timecode < 0 {
				t.Fatalf("negative relative timecode %d", ev.Block.Timecode)
			}
		case EventTags:
			tags = append(tags, ev.Tags[0].Name)
		}
	}
	base := int64(epoch / ms)
	wantBlocks := []blk{{2, base + 990}, {1, base + 1066}, {1, base + 1000}, {1, base + 1033}, {1, base + 2000}}
	if !slices.Equal(clusters, []int64{base + 990, base + 2000}) || !slices.Equal(blocks, wantBlocks) ||
		!slices.Equal(tags, []string{"camera", TagEndOfFragment}) {
		t.Fatalf("clusters %v blocks %v tags %v", clusters, blocks, tags)
	}
}

func TestWriterExplicitAllocatesNothingPerFrame(t *testing.T) {
	w, _ := NewWriter(io.Discard, goldenHeader())
	frame := make([]byte, 20000)
	var pts time.Duration
	step := func() {
		if pts%time.Second == 0 {
			if err := w.StartCluster(pts); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.WriteBlock(1, pts, pts%time.Second == 0, frame); err != nil {
			t.Fatal(err)
		}
		pts += 40 * time.Millisecond
	}
	for range 100 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}
