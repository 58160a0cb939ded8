package live

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvsgo/kvsgo/mkv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	sps = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}
	pps = []byte{0x68, 0xce, 0x3c, 0x80}
)

// avcC is a decoder configuration record with sps and pps, 4-byte lengths.
func avcC() []byte {
	b := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	return append(b, pps...)
}

func header(codecID string, private []byte) *mkv.Event {
	return &mkv.Event{Type: mkv.EventHeader, Header: &mkv.Header{TimecodeScale: 1e6, Tracks: []mkv.Track{
		{Number: 1, Type: mkv.TrackTypeVideo, CodecID: codecID, CodecPrivate: private},
		{Number: 2, Type: mkv.TrackTypeAudio, CodecID: "A_AAC"},
	}}}
}

// frame is a block of track 1 at timecode tc (ms): one NAL unit of size
// bytes, an IDR slice when key.
func frame(tc int64, key bool, size int) *mkv.Event {
	nalu := bytes.Repeat([]byte{0xab}, size)
	nalu[0] = 0x41
	if key {
		nalu[0] = 0x65
	}
	data := binary.BigEndian.AppendUint32(nil, uint32(len(nalu)))
	data = append(data, nalu...)
	return &mkv.Event{Type: mkv.EventBlock, Timecode: tc, Key: key, Block: mkv.Block{Track: 1, Frames: [][]byte{data}}}
}

func received(v *Viewer) []*Frame {
	var out []*Frame
	for {
		select {
		case f := <-v.Frames():
			out = append(out, f)
		default:
			return out
		}
	}
}

// A viewer that joins mid-fragment gets nothing until the next key frame,
// which comes with the parameter sets first (STAP-A), then every frame,
// each ending with the marker bit, stamped with its producer time.
func TestViewerStartsAtNextKeyFrame(t *testing.T) {
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", true, 1_700_000_000_000)
	defer p.Close()
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	p.Event(frame(0, true, 100))
	v, err := h.Subscribe("cam")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p.Event(frame(33, false, 100))
	p.Event(frame(67, false, 100))
	if got := received(v); len(got) != 0 {
		t.Fatalf("a viewer joining mid-fragment got %d frames before a key frame", len(got))
	}
	p.Event(frame(1000, true, 100))
	p.Event(&mkv.Event{Type: mkv.EventBlock, Timecode: 1000, Key: true, Block: mkv.Block{Track: 2, Frames: [][]byte{{1, 2, 3}}}}) // audio: not sent
	p.Event(frame(1033, false, 100))
	got := received(v)
	if len(got) != 2 || !got[0].Key || got[1].Key {
		t.Fatalf("got %d frames, want the key frame and the one after", len(got))
	}
	key := got[0].Packets
	if len(key) != 2 || key[0].Payload[0]&0x1f != 24 || !bytes.Contains(key[0].Payload, sps) || !bytes.Contains(key[0].Payload, pps) {
		t.Fatalf("the key frame's first packet is not a STAP-A of SPS and PPS: %x", key[0].Payload)
	}
	if key[0].Marker || !key[1].Marker || key[1].Payload[0] != 0x65 {
		t.Fatalf("marker bits %v %v, second packet NAL %x", key[0].Marker, key[1].Marker, key[1].Payload[0])
	}
	want := RTPTimestamp((1_700_000_000_000 + 1000) * 1e6)
	if key[0].Timestamp != want || got[1].Packets[0].Timestamp != want+33*90 {
		t.Fatalf("timestamps %d, %d; want %d, %d", key[0].Timestamp, got[1].Packets[0].Timestamp, want, want+33*90)
	}
}

// Many viewers share one copy of each frame; a big NAL unit is split into
// FU-A packets no bigger than the MTU, the marker on the last.
func TestViewersShareOneCopy(t *testing.T) {
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", false, 0)
	defer p.Close()
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	var viewers []*Viewer
	for range 3 {
		v, err := h.Subscribe("cam")
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		viewers = append(viewers, v)
	}
	p.Event(frame(0, true, 5000))
	first := received(viewers[0])
	for _, v := range viewers[1:] {
		if got := received(v); len(got) != 1 || got[0] != first[0] {
			t.Fatalf("viewers got different copies of the frame")
		}
	}
	pkts := first[0].Packets
	if len(pkts) < 6 {
		t.Fatalf("a 5000-byte key frame went out in %d packets", len(pkts))
	}
	for i, pk := range pkts {
		if len(pk.Payload) > MTU || pk.Marker != (i == len(pkts)-1) {
			t.Fatalf("packet %d: %d bytes, marker %v", i, len(pk.Payload), pk.Marker)
		}
	}
	if pkts[1].Payload[0]&0x1f != 28 {
		t.Fatalf("packet 1 is NAL type %d, want FU-A (28)", pkts[1].Payload[0]&0x1f)
	}
}

// A viewer that does not keep up drops frames, then starts again at a key
// frame; the others get everything.
func TestSlowViewerSkipsToNextKeyFrame(t *testing.T) {
	h := NewHub(nil)
	defer h.Close()
	p := h.Publish("cam", false, 0)
	defer p.Close()
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	slow, _ := h.Subscribe("cam")
	defer slow.Close()
	fast, _ := h.Subscribe("cam")
	defer fast.Close()
	var fastGot int
	tc := int64(0)
	for i := range ViewerQueue + 10 {
		p.Event(frame(tc, i == 0, 50))
		tc += 33
		fastGot += len(received(fast))
	}
	if fastGot != ViewerQueue+10 {
		t.Fatalf("the viewer that keeps up got %d of %d frames", fastGot, ViewerQueue+10)
	}
	if n := len(received(slow)); n != ViewerQueue || slow.Dropped() != 10 {
		t.Fatalf("the slow viewer had %d queued, dropped %d", n, slow.Dropped())
	}
	p.Event(frame(tc, false, 50))
	p.Event(frame(tc+33, true, 50))
	got := received(slow)
	if len(got) != 1 || !got[0].Key {
		t.Fatalf("after falling behind, the slow viewer got %d frames, want the next key frame only", len(got))
	}
}

// B-frames (a frame with an earlier time than the one before) end the
// viewers and turn new ones away, as does a codec other than H.264; a
// stream without a producer has nothing live.
func TestWhatCannotBeWatched(t *testing.T) {
	h := NewHub(nil)
	defer h.Close()
	if _, err := h.Subscribe("cam"); !errors.Is(err, ErrNotLive) {
		t.Fatalf("no producer: %v", err)
	}
	p := h.Publish("cam", false, 0)
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	v, err := h.Subscribe("cam")
	if err != nil {
		t.Fatal(err)
	}
	p.Event(frame(0, true, 50))
	p.Event(frame(100, false, 50))
	p.Event(frame(33, false, 50)) // shown before the one sent before it
	select {
	case <-v.Done():
	default:
		t.Fatal("a B-frame did not end the viewer")
	}
	if !errors.Is(v.Err(), ErrReordered) || !errors.Is(h.Status("cam"), ErrReordered) {
		t.Fatalf("B-frames: viewer %v, status %v", v.Err(), h.Status("cam"))
	}
	if _, err := h.Subscribe("cam"); !errors.Is(err, ErrReordered) {
		t.Fatalf("subscribing to a B-frame stream: %v", err)
	}
	p.Close()

	// The next session starts afresh: VP8 this time.
	p = h.Publish("cam", false, 0)
	defer p.Close()
	if _, err := h.Subscribe("cam"); !errors.Is(err, ErrStarting) {
		t.Fatalf("before the header: %v", err)
	}
	p.Event(header("V_VP8", nil))
	if _, err := h.Subscribe("cam"); !errors.Is(err, ErrCodec) {
		t.Fatalf("VP8: %v", err)
	}
	p.Event(header("V_MPEGH/ISO/HEVC", []byte{1, 2}))
	if err := h.Status("cam"); err == nil || !strings.Contains(err.Error(), "H.265 codec private data is unreadable") {
		t.Fatalf("an unreadable hvcC: %v", err)
	}
	p.Event(header("V_MPEG4/ISO/AVC", []byte{1, 2}))
	if err := h.Status("cam"); err == nil {
		t.Fatal("an unreadable avcC is watchable")
	}
}

// A viewer outlives its producer's session: the next session goes on from
// its first key frame.
func TestViewerSurvivesProducerReconnect(t *testing.T) {
	h := NewHub(nil)
	p := h.Publish("cam", false, 0)
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	v, _ := h.Subscribe("cam")
	p.Event(frame(0, true, 50))
	p.Close()
	if !errors.Is(h.Status("cam"), ErrNotLive) {
		t.Fatalf("status without a producer: %v", h.Status("cam"))
	}
	p = h.Publish("cam", false, 0)
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	p.Event(frame(5000, false, 50))
	p.Event(frame(5033, true, 50))
	p.Close()
	got := received(v)
	if len(got) != 2 || !got[1].Key {
		t.Fatalf("got %d frames across two sessions", len(got))
	}
	h.Close()
	select {
	case <-v.Done():
	default:
		t.Fatal("Close did not end the viewer")
	}
	if !errors.Is(v.Err(), ErrClosed) {
		t.Fatalf("after Close: %v", v.Err())
	}
	if _, err := h.Subscribe("cam"); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribing after Close: %v", err)
	}
}

// A nil Publisher (an ingest without a live view) takes events and
// closes without effect.
func TestNilPublisher(t *testing.T) {
	var p *Publisher
	p.Event(header("V_MPEG4/ISO/AVC", avcC()))
	p.Event(frame(0, true, 10))
	p.Close()
}

// FuzzPublisher: whatever the codec (H.264 or H.265), codec private data
// and frames, the publisher neither panics nor sends a packet over the
// MTU.
func FuzzPublisher(f *testing.F) {
	hvcC := hvcCOf(f)
	f.Add(false, avcC(), frame(0, true, 3000).Block.Frames[0], true)
	f.Add(false, []byte{1, 0x42, 0, 0x1f, 0xfc, 0xe1, 0xff, 0xff}, []byte{0, 0, 0, 9, 0x65}, true)
	f.Add(false, []byte{}, []byte{0xff, 0xff, 0xff, 0xff, 1}, false)
	f.Add(true, hvcC, h265IDR(3000), true)
	f.Add(true, hvcC, []byte{0, 0, 0, 3, 0x62, 0x01, 0xff}, true) // a fragment unit's type in a frame
	f.Add(true, hvcC[:30], []byte{0, 0, 0, 2, 0x40, 0x01}, true)
	f.Fuzz(func(t *testing.T, h265 bool, private, data []byte, key bool) {
		h := NewHub(nil)
		defer h.Close()
		p := h.Publish("cam", false, 0)
		defer p.Close()
		id := "V_MPEG4/ISO/AVC"
		if h265 {
			id = "V_MPEGH/ISO/HEVC"
		}
		p.Event(header(id, private))
		v, err := h.Subscribe("cam")
		if err != nil {
			return
		}
		defer v.Close()
		p.Event(&mkv.Event{Type: mkv.EventBlock, Key: key, Block: mkv.Block{Track: 1, Frames: [][]byte{data}}})
		for _, fr := range received(v) {
			for _, pk := range fr.Packets {
				if len(pk.Payload) > MTU {
					t.Fatalf("a packet of %d bytes", len(pk.Payload))
				}
			}
		}
	})
}
