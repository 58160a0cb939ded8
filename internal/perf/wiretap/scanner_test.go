package wiretap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf/perftest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// at is the arrival time the tests give the byte at offset off: t0 plus
// off nanoseconds, so a recorded time says which byte it came from.
func at(off int) time.Time { return t0.Add(time.Duration(off)) }

// feedSplit feeds b to feed in pieces of random length, each stamped with
// the time of its last byte.
func feedSplit(b []byte, seed uint64, maxPiece int, feed func([]byte, time.Time)) {
	r := rand.New(rand.NewPCG(seed, 1))
	for off := 0; off < len(b); {
		n := min(1+r.IntN(maxPiece), len(b)-off)
		feed(b[off:off+n], at(off+n-1))
		off += n
	}
}

// oracle is what kvsgo's own Matroska demuxer finds in a stream.
type oracle struct {
	frames    []Frame // Track, Timecode, Key, At (as the byte offset of the block's last byte)
	fragments []int64 // cluster timecodes
	ends      []int   // offset where each cluster ended
}

func demux(t *testing.T, b []byte) oracle {
	t.Helper()
	d := mkv.NewDemuxer(bytes.NewReader(b))
	var o oracle
	var events []mkv.Event
	for {
		ev, err := d.Next()
		if err != nil {
			break
		}
		events = append(events, *ev)
	}
	for i, ev := range events {
		switch ev.Type {
		case mkv.EventCluster:
			o.fragments = append(o.fragments, ev.Timecode)
		case mkv.EventClusterEnd:
			o.ends = append(o.ends, int(ev.Offset))
		case mkv.EventBlock:
			// The block ends where the next element the demuxer reports
			// begins (blocks and cluster ends are reported at their
			// offsets), or at the end of the stream.
			end := len(b)
			for _, next := range events[i+1:] {
				if next.Type == mkv.EventBlock || next.Type == mkv.EventClusterEnd || next.Type == mkv.EventTags || next.Type == mkv.EventEBML {
					end = int(next.Offset)
					break
				}
			}
			o.frames = append(o.frames, Frame{Track: ev.Block.Track, Timecode: ev.Timecode, Key: ev.Key, At: at(end - 1)})
		}
	}
	return o
}

func scan(b []byte, seed uint64, maxPiece int) (*Session, error) {
	rec := &recorder{s: &Session{}, cur: -1}
	m := &mkvScanner{rec: rec}
	feedSplit(b, seed, maxPiece, m.feed)
	m.end(at(len(b)))
	return rec.s, m.err
}

func checkAgainstDemuxer(t *testing.T, name string, b []byte) {
	want := demux(t, b)
	if len(want.frames) == 0 {
		t.Fatalf("%s: the demuxer found no frames", name)
	}
	for _, maxPiece := range []int{1, 7, 1500, 65536, len(b)} {
		s, err := scan(b, uint64(maxPiece), maxPiece)
		if err != nil {
			t.Fatalf("%s, pieces ≤ %d: %v", name, maxPiece, err)
		}
		if len(s.Frames) != len(want.frames) {
			t.Fatalf("%s, pieces ≤ %d: %d frames, the demuxer found %d", name, maxPiece, len(s.Frames), len(want.frames))
		}
		for i, f := range s.Frames {
			w := want.frames[i]
			if f.Track != w.Track || f.Timecode != w.Timecode || f.Key != w.Key {
				t.Fatalf("%s, pieces ≤ %d: frame %d is track %d at %d key %v, the demuxer says track %d at %d key %v",
					name, maxPiece, i, f.Track, f.Timecode, f.Key, w.Track, w.Timecode, w.Key)
			}
			// A frame is stamped with the arrival of its last byte: the
			// piece that held it arrived no earlier, and byte by byte
			// exactly then.
			if f.At.Before(w.At) || (maxPiece == 1 && !f.At.Equal(w.At)) {
				t.Fatalf("%s, pieces ≤ %d: frame %d stamped at byte %d, its last byte is %d",
					name, maxPiece, i, f.At.Sub(t0), w.At.Sub(t0))
			}
		}
		if len(s.Fragments) != len(want.fragments) {
			t.Fatalf("%s: %d fragments, the demuxer found %d", name, len(s.Fragments), len(want.fragments))
		}
		for i, fr := range s.Fragments {
			if fr.Timecode != want.fragments[i] {
				t.Fatalf("%s: fragment %d at %d, the demuxer says %d", name, i, fr.Timecode, want.fragments[i])
			}
			if fr.Completed.IsZero() {
				t.Fatalf("%s: fragment %d never completed", name, i)
			}
			// Completed once the header of the element after it has
			// arrived: byte by byte, within those 12 bytes.
			slack := time.Duration(12 + maxPiece)
			if maxPiece == 1 {
				slack = 12
			}
			if end := at(want.ends[i]); fr.Completed.Before(end) || fr.Completed.After(end.Add(slack)) {
				t.Fatalf("%s, pieces ≤ %d: fragment %d completed at byte %d, it ended at %d",
					name, maxPiece, i, fr.Completed.Sub(t0), want.ends[i])
			}
		}
	}
}

func TestMatroskaScannerAgreesWithDemuxer(t *testing.T) {
	b, _ := perftest.Stream(t, 1_795_000_000_000, false)
	checkAgainstDemuxer(t, "mkv.Writer stream", b)
	kvssink, err := os.ReadFile("../../../../shared/reference/kvssink-capture/04_putMedia.body")
	if err != nil {
		t.Fatalf("AWS's kvssink capture: %v", err)
	}
	checkAgainstDemuxer(t, "kvssink's PutMedia body", kvssink)
}

func TestMatroskaScannerStopsOnGarbage(t *testing.T) {
	b, _ := perftest.Stream(t, 1000, false)
	bad := append(b, 0x00, 0x00, 0x00) // where the next element's ID would be
	if _, err := scan(bad, 1, 64); err == nil {
		t.Fatal("scanned an element ID starting 0x00 without complaint")
	}
}

// chunked encodes body as HTTP/1.1 chunks of random sizes, some with
// extensions, and a trailer.
func chunked(body []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	var out bytes.Buffer
	for off := 0; off < len(body); {
		n := min(1+r.IntN(9000), len(body)-off)
		if r.IntN(5) == 0 {
			fmt.Fprintf(&out, "%X;ext=1\r\n", n)
		} else {
			fmt.Fprintf(&out, "%x\r\n", n)
		}
		out.Write(body[off : off+n])
		out.WriteString("\r\n")
		off += n
	}
	out.WriteString("0\r\nX-Trailer: yes\r\n\r\n")
	return out.Bytes()
}

// connection is what a client such as kvsgo put writes on one keep-alive
// connection: a control-plane call, PutMedia with a chunked body, another
// call.
func connection(t testing.TB, small bool) ([]byte, []perftest.Block) {
	body, blocks := perftest.Stream(t, 1_795_000_000_000, small)
	var c bytes.Buffer
	c.WriteString("POST /describeStream HTTP/1.1\r\nHost: 127.0.0.1:4567\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"StreamName\":\"porch\"}")
	c.WriteString("POST /putMedia HTTP/1.1\r\nHost: 127.0.0.1:4567\r\nx-amzn-stream-name: porch\r\nTransfer-Encoding: chunked\r\n\r\n")
	c.Write(chunked(body, 3))
	c.WriteString("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:4567\r\n\r\n")
	return c.Bytes(), blocks
}

func TestRequestScanner(t *testing.T) {
	conn, blocks := connection(t, false)
	for _, maxPiece := range []int{1, 100, 70000} {
		var reqs []Request
		var rec *recorder
		s := &requestScanner{onRequest: func(r Request, hr *http.Request) *recorder {
			reqs = append(reqs, r)
			if r.Path == "/putMedia" {
				rec = &recorder{s: &Session{Stream: hr.Header.Get("x-amzn-stream-name"), Opened: r.At}, cur: -1}
				return rec
			}
			return nil
		}}
		feedSplit(conn, uint64(maxPiece), maxPiece, s.feed)
		if s.blindErr != nil {
			t.Fatalf("pieces ≤ %d: %v", maxPiece, s.blindErr)
		}
		got := make([]string, len(reqs))
		for i, r := range reqs {
			got[i] = r.Method + " " + r.Path
		}
		if strings.Join(got, ", ") != "POST /describeStream, POST /putMedia, GET /healthz" {
			t.Fatalf("pieces ≤ %d: requests %v", maxPiece, got)
		}
		putAt := bytes.Index(conn, []byte("POST /putMedia"))
		if maxPiece == 1 && !reqs[1].At.Equal(at(putAt)) {
			t.Fatalf("PutMedia stamped at byte %d, it starts at %d", reqs[1].At.Sub(t0), putAt)
		}
		ses := rec.s
		if ses.Stream != "porch" || ses.ScanErr != "" {
			t.Fatalf("session %q, scan error %q", ses.Stream, ses.ScanErr)
		}
		if ses.FirstBody.IsZero() || ses.BodyEnded.IsZero() || !ses.BodyEnded.After(ses.FirstBody) {
			t.Fatalf("body from %v to %v", ses.FirstBody, ses.BodyEnded)
		}
		if len(ses.Frames) != len(blocks) {
			t.Fatalf("pieces ≤ %d: %d frames through the chunks, %d written", maxPiece, len(ses.Frames), len(blocks))
		}
		for i, f := range ses.Frames {
			b := blocks[i]
			if f.Track != b.Track || f.Timecode != b.Timecode || f.Key != b.Key || f.Size != b.Size {
				t.Fatalf("frame %d: %+v, written %+v", i, f, b)
			}
		}
		if len(ses.Fragments) != 5 {
			t.Fatalf("%d fragments, 5 written", len(ses.Fragments))
		}
	}
}

func TestAckScanner(t *testing.T) {
	acks := []kvs.Ack{
		{EventType: kvs.AckBuffering, FragmentTimecode: 1795000000000, HasTimecode: true, FragmentNumber: "91343852333181432392682062607743920146159169392"},
		{EventType: kvs.AckReceived, FragmentTimecode: 1795000000000, HasTimecode: true, FragmentNumber: "1"},
		{EventType: kvs.AckIdle},
		{EventType: kvs.AckPersisted, FragmentTimecode: 1795000000000, HasTimecode: true, FragmentNumber: "1"},
		{EventType: kvs.AckError, FragmentTimecode: 1795000001000, HasTimecode: true, ErrorID: 4006, ErrorCode: "INVALID_MKV_DATA"},
	}
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	for _, a := range acks {
		line := a.AppendJSON(nil)
		fmt.Fprintf(&resp, "%x\r\n%s\r\n", len(line), line)
	}
	resp.WriteString("0\r\n\r\n")
	for _, maxPiece := range []int{1, 13, 4096} {
		rec := &recorder{s: &Session{}, cur: -1}
		a := &ackScanner{rec: func() *recorder { return rec }}
		feedSplit(resp.Bytes(), uint64(maxPiece), maxPiece, a.feed)
		if len(rec.s.Acks) != len(acks) {
			t.Fatalf("pieces ≤ %d: %d acks, %d sent", maxPiece, len(rec.s.Acks), len(acks))
		}
		for i, got := range rec.s.Acks {
			if got.Ack != acks[i] {
				t.Fatalf("ack %d: %+v, sent %+v", i, got.Ack, acks[i])
			}
		}
		// Each ack is stamped with the arrival of its newline.
		nl := bytes.Index(resp.Bytes(), []byte("}\n")) + 1
		if maxPiece == 1 && !rec.s.Acks[0].At.Equal(at(nl)) {
			t.Fatalf("first ack stamped at byte %d, its newline is %d", rec.s.Acks[0].At.Sub(t0), nl)
		}
	}
}

func TestSessionJoinsAcksToFragments(t *testing.T) {
	s := &Session{
		Fragments: []Fragment{{Timecode: 1000}, {Timecode: 2000}, {Timecode: 3000}},
		Acks: []AckAt{
			{kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: 1000, HasTimecode: true}, at(5)},
			{kvs.Ack{EventType: kvs.AckBuffering, FragmentTimecode: 2000, HasTimecode: true}, at(6)},
			{kvs.Ack{EventType: kvs.AckIdle}, at(7)},
			{kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: 2000, HasTimecode: true}, at(8)},
			{kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: 2000, HasTimecode: true}, at(9)}, // a resend's
			{kvs.Ack{EventType: kvs.AckError, FragmentTimecode: 3000, HasTimecode: true, ErrorID: 5001}, at(10)},
			{kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: 4000, HasTimecode: true}, at(11)},
		},
	}
	c := s.clone()
	f := c.Fragments
	if !f[0].Persisted.Equal(at(5)) || !f[1].Buffering.Equal(at(6)) || !f[1].Persisted.Equal(at(8)) || !f[2].Persisted.IsZero() ||
		!f[2].Error.Equal(at(10)) || f[2].ErrorID != 5001 {
		t.Fatalf("joined: %+v", f)
	}
	if !s.Fragments[0].Persisted.IsZero() {
		t.Fatal("clone changed the original")
	}
}
