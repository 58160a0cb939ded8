package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

func videoTrack(n uint64) mkv.Track {
	return mkv.Track{Number: n, Type: mkv.TrackTypeVideo, CodecID: "V_MPEG4/ISO/AVC", Width: 64, Height: 64,
		CodecPrivate: []byte{1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce}}
}

// body builds a Matroska stream: frames at the given millisecond times, a
// key frame (new fragment) at each time in keys.
func body(t *testing.T, tracks []mkv.Track, times []int64, keys map[int64]bool) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := mkv.NewWriter(&b, mkv.Header{Tracks: tracks})
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range times {
		if err := w.WriteFrame(1, time.Duration(ms)*time.Millisecond, keys[ms], []byte{0, 0, 0, 2, 0x65, byte(ms)}); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func errorAck(t *testing.T, acks []kvs.Ack) kvs.Ack {
	t.Helper()
	for _, a := range acks {
		if a.EventType == kvs.AckError {
			return a
		}
	}
	t.Fatalf("no ERROR ack in %v", acks)
	return kvs.Ack{}
}

func TestIngestErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *server.Config) { c.MaxFragmentDuration = 2 * time.Second })
	ts.createStream(t, "errs", 24)
	base := int64(1_700_000_000_000)

	// Timecodes going backwards: 4004 on the second fragment.
	var b bytes.Buffer
	w, _ := mkv.NewWriter(&b, mkv.Header{Tracks: []mkv.Track{videoTrack(1)}})
	must(t, w.WriteFrame(1, time.Duration(base+1000)*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65}))
	must(t, w.EndFragment())
	w2, _ := mkv.NewWriter(&b, mkv.Header{Tracks: []mkv.Track{videoTrack(1)}})
	_ = w2.WriteFrame(1, time.Duration(base)*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65})
	acks, _ := putMedia(t, ts.URL, "errs", bytes.NewReader(b.Bytes()), "ABSOLUTE")
	if a := errorAck(t, acks); a.ErrorID != 4004 || a.ErrorCode != "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS" || a.FragmentTimecode != base {
		t.Fatalf("backwards: %+v", a)
	}

	// A fragment longer than the limit: 4002.
	acks, _ = putMedia(t, ts.URL, "errs", bytes.NewReader(body(t, []mkv.Track{videoTrack(1)},
		[]int64{base + 5000, base + 6000, base + 7500}, map[int64]bool{base + 5000: true})), "ABSOLUTE")
	if a := errorAck(t, acks); a.ErrorID != 4002 || a.ErrorCode != "MAX_FRAGMENT_DURATION_REACHED" {
		t.Fatalf("long fragment: %+v", a)
	}

	// Four tracks: 4012.
	four := []mkv.Track{videoTrack(1), videoTrack(2), videoTrack(3), videoTrack(4)}
	acks, _ = putMedia(t, ts.URL, "errs", bytes.NewReader(body(t, four, []int64{base + 9000}, map[int64]bool{base + 9000: true})), "ABSOLUTE")
	if a := errorAck(t, acks); a.ErrorID != 4012 {
		t.Fatalf("four tracks: %+v", a)
	}

	// Not Matroska at all: 4006.
	acks, _ = putMedia(t, ts.URL, "errs", strings.NewReader(strings.Repeat("this is not video ", 100)), "ABSOLUTE")
	if a := errorAck(t, acks); a.ErrorID != 4006 || a.ErrorCode != "INVALID_MKV_DATA" {
		t.Fatalf("garbage: %+v", a)
	}

	// A frame for a track the header does not have: 4010.
	var bad bytes.Buffer
	bad.Write(body(t, []mkv.Track{videoTrack(1)}, []int64{base + 10000}, map[int64]bool{base + 10000: true}))
	bad.Write(mkv.AppendSimpleBlockHeader(nil, 5, 1, 0, 1))
	bad.WriteByte(0)
	acks, _ = putMedia(t, ts.URL, "errs", &bad, "ABSOLUTE")
	if a := errorAck(t, acks); a.ErrorID != 4010 {
		t.Fatalf("unknown track: %+v", a)
	}

	// Missing stream and bad headers are refused before streaming.
	if _, code, msg := putMediaRaw(t, ts.URL, "nope", strings.NewReader("x"), "ABSOLUTE", nil); code != 404 || !strings.Contains(msg, "ResourceNotFoundException") {
		t.Fatalf("missing stream: %d %s", code, msg)
	}
	if _, code, msg := putMediaRaw(t, ts.URL, "errs", strings.NewReader("x"), "SIDEWAYS", nil); code != 400 || !strings.Contains(msg, "InvalidArgumentException") {
		t.Fatalf("bad timecode type: %d %s", code, msg)
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *server.Config) { c.MaxConnectionDuration = 300 * time.Millisecond })
	ts.createStream(t, "one", 24)
	pr, pw := io.Pipe()
	first := make(chan []kvs.Ack)
	go func() {
		acks, _ := putMedia(t, ts.URL, "one", pr, "ABSOLUTE")
		first <- acks
	}()
	w, _ := mkv.NewWriter(pw, mkv.Header{Tracks: []mkv.Track{videoTrack(1)}})
	must(t, w.WriteFrame(1, 1000*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65}))
	// While it is open, a second connection to the same stream is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, code, msg := putMediaRaw(t, ts.URL, "one", strings.NewReader(""), "ABSOLUTE", nil)
		if code == 400 && strings.Contains(msg, "ConnectionLimitExceededException") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second connection: %d %s", code, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Past the connection's maximum age, the next fragment gets 4003.
	time.Sleep(400 * time.Millisecond)
	go func() { _ = w.WriteFrame(1, 2000*time.Millisecond, true, []byte{0, 0, 0, 1, 0x65}) }()
	acks := <-first
	pw.Close()
	if a := errorAck(t, acks); a.ErrorID != 4003 {
		t.Fatalf("old connection: %+v", a)
	}
}

// TestResentFragmentsStoredOnce: a producer that reconnects and sends the
// same fragments again (same producer timestamps) does not duplicate them.
func TestResentFragmentsStoredOnce(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	ts.createStream(t, "capture", 24)
	data, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		acks, _ := putMedia(t, ts.URL, "capture", bytes.NewReader(data), "ABSOLUTE")
		if n := countAcks(acks); n[kvs.AckPersisted] != 12 {
			t.Fatalf("acks %v", n)
		}
	}
	var out struct{ Fragments []map[string]any }
	ts.call(t, "/listFragments", map[string]any{"StreamName": "capture"}, &out)
	if len(out.Fragments) != 12 {
		t.Fatalf("%d fragments stored after sending 12 twice", len(out.Fragments))
	}
}

func TestNoPersistedAckWithoutRetention(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	ts.createStream(t, "live-only", 0)
	acks, _ := putMedia(t, ts.URL, "live-only", bytes.NewReader(body(t, []mkv.Track{videoTrack(1)},
		[]int64{1000, 1033, 2000}, map[int64]bool{1000: true, 2000: true})), "ABSOLUTE")
	if n := countAcks(acks); n[kvs.AckReceived] != 2 || n[kvs.AckPersisted] != 0 {
		t.Fatalf("acks %v", n)
	}
}

// TestExpectContinueAndIdle speaks HTTP by hand: the server answers
// Expect: 100-continue before any body byte is sent, acknowledges as the
// data arrives, sends IDLE while none does, and ends the session after the
// idle timeout. kvssink's own headers are used, Host without its port.
func TestExpectContinueAndIdle(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *server.Config) {
		c.Credentials = nil // kvssink's recorded signature is from another day
		c.IdleInterval = 100 * time.Millisecond
		c.IdleTimeout = 1500 * time.Millisecond
	})
	ts.createStream(t, "capture", 24)
	head, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.head"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep kvssink's signature; give it a current date so the clock check passes.
	req := strings.Replace(string(head), "X-Amz-Date: 20261125T115307Z", "X-Amz-Date: "+time.Now().UTC().Format("20060102T150405Z"), 1)
	req = strings.Replace(req, "Credential=AKIDEXAMPLE/20261125/", "Credential=AKIDEXAMPLE/"+time.Now().UTC().Format("20060102")+"/", 1)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
		t.Fatalf("before the body: %q %v", line, err)
	}
	_, _ = br.ReadString('\n')
	data := body(t, []mkv.Track{videoTrack(1)}, []int64{1000, 1033, 2000}, map[int64]bool{1000: true, 2000: true})
	fmt.Fprintf(conn, "%x\r\n%s\r\n", len(data), data)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("status %d, transfer encoding %v", resp.StatusCode, resp.TransferEncoding)
	}
	var events []kvs.AckEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		a, err := kvs.ParseAck(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, a.EventType)
	}
	// The first fragment completes when the second starts; the second is
	// still open when data stops, so no RECEIVED for it before the timeout,
	// only IDLE acks. (An IDLE may come earlier too, on a loaded machine
	// that takes over 100 ms to store the first fragment.)
	var acks []kvs.AckEvent
	for _, e := range events {
		if e != kvs.AckIdle {
			acks = append(acks, e)
		}
	}
	// The last ack is an IDLE, so one follows the second BUFFERING.
	if fmt.Sprint(acks) != "[BUFFERING RECEIVED PERSISTED BUFFERING]" || events[len(events)-1] != kvs.AckIdle {
		t.Fatalf("acks %v", events)
	}
}

// TestDataEndpointWithoutPortInHost: kvssink sends "Host: 127.0.0.1";
// GetDataEndpoint must still name the port it connected to.
func TestDataEndpointWithoutPortInHost(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *server.Config) { c.Credentials = nil })
	ts.createStream(t, "capture", 24)
	head, _ := os.ReadFile(mediatest.Reference(t, "kvssink-capture/03_getDataEndpoint.head"))
	bodyBytes, _ := os.ReadFile(mediatest.Reference(t, "kvssink-capture/03_getDataEndpoint.body"))
	req := strings.Replace(string(head), "X-Amz-Date: ", "X-Amz-Date: "+time.Now().UTC().Format("20060102T150405Z")+"\r\nX-Old-Date: ", 1)
	req = strings.Replace(req, "Credential=AKIDEXAMPLE/20261125/", "Credential=AKIDEXAMPLE/"+time.Now().UTC().Format("20060102")+"/", 1)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, req)
	conn.Write(bodyBytes)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"DataEndpoint":"`+ts.URL+`"`) {
		t.Fatalf("%d %s (server at %s)", resp.StatusCode, got, ts.URL)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	ts.createStream(t, "m", 24)
	putMedia(t, ts.URL, "m", bytes.NewReader(body(t, []mkv.Track{videoTrack(1)}, []int64{1000}, map[int64]bool{1000: true})), "ABSOLUTE")
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": `kvsgo_fragments_stored_total{stream="m"} 1`} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d, missing %q", path, resp.StatusCode, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
