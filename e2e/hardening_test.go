package e2e

import (
	"bufio"
	"bytes"
	be "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// serverCloses reports whether the server closes c before deadline, while
// the test reads from it (a response, if any, is read and discarded).
func serverCloses(c net.Conn, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestServeSlowlorisHeader: a client that sends its request header a byte
// at a time, never finishing it, is cut off after --header-timeout; others
// are served meanwhile.
func TestServeSlowlorisHeader(t *testing.T) {
	t.Parallel()
	srv := startServe(t, append(serveArgs(t.TempDir()), "--header-timeout", "1s")...)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = c.Write([]byte("POST /listStreams HTTP/1.1\r\nHost: kvs\r\nX-Slow: "))
		for range 600 { // a minute, unless the server hangs up
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("serve still reads a header that has been arriving for 30 s (--header-timeout 1s)")
	}
	if code := call(t, srv.url, "/listStreams", map[string]any{}, nil); code != 200 {
		t.Fatalf("listStreams: %d", code)
	}
}

// TestServeSilentClients: a client that connects and sends nothing, and
// one that sends a header and then not the body it announced, are cut off
// (--header-timeout, --request-timeout) instead of holding a connection.
func TestServeSilentClients(t *testing.T) {
	t.Parallel()
	srv := startServe(t, append(serveArgs(t.TempDir()), "--header-timeout", "1s", "--request-timeout", "1s")...)
	addr := strings.TrimPrefix(srv.url, "http://")
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := fmt.Fprintf(half, "POST /listStreams HTTP/1.1\r\nHost: kvs\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"MaxResults\""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	if !serverCloses(silent, deadline) {
		t.Fatal("a client that sent nothing for 30 s is still connected (--header-timeout 1s)")
	}
	if !serverCloses(half, deadline) {
		t.Fatal("a client that stopped sending its body is still connected after 30 s (--request-timeout 1s)")
	}
}

// TestServeOversizedRequests: a JSON body over 1 MiB is refused with 413
// SerializationException before it is read whole; a header over
// --max-header-bytes with 431.
func TestServeOversizedRequests(t *testing.T) {
	t.Parallel()
	srv := startServe(t, append(serveArgs(t.TempDir()), "--max-header-bytes", "4096")...)
	var out bytes.Buffer
	big := map[string]any{"StreamName": strings.Repeat("x", 2<<20)}
	if code := callRaw(t, srv.url, "/describeStream", big, &out); code != 413 || !strings.Contains(out.String(), "request body over") {
		t.Fatalf("a 2 MiB body: %d %s", code, out.String())
	}
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/listStreams", strings.NewReader("{}"))
	req.Header.Set("X-Padding", strings.Repeat("p", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 64 KiB header: %d", resp.StatusCode)
	}
	if code := call(t, srv.url, "/listStreams", map[string]any{}, nil); code != 200 {
		t.Fatalf("listStreams after: %d", code)
	}
}

// TestServeConnectionsPerClient: past --max-conns-per-client, a client's
// next connection gets a 503 ServiceUnavailable that names the limit; once
// it closes one, it is served again.
func TestServeConnectionsPerClient(t *testing.T) {
	t.Parallel()
	srv := startServe(t, append(serveArgs(t.TempDir()), "--max-conns-per-client", "3")...)
	addr := strings.TrimPrefix(srv.url, "http://")
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The server counts a connection when it accepts it: a request on a
	// held one shows that all three have been.
	for _, c := range held {
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: kvs\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(srv.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("X-Amzn-ErrorType"), "ServiceUnavailable") ||
		!strings.Contains(string(body), "--max-conns-per-client") {
		t.Fatalf("a fourth connection: %d %s", resp.StatusCode, body)
	}
	held[0].Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(srv.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after closing a connection: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// putAll sends body as one PutMedia session and returns the acks.
func putAll(t *testing.T, base, stream string, body []byte) []kvs.Ack {
	t.Helper()
	s := openSession(t, base, stream)
	go func() {
		_, _ = s.body.Write(body)
		_ = s.body.Close()
	}()
	var acks []kvs.Ack
	for a := range s.acks {
		acks = append(acks, a)
	}
	return acks
}

// firstBlockTrack returns the offset of the track number of the first
// SimpleBlock in b.
func firstBlockTrack(t *testing.T, b []byte) int {
	t.Helper()
	r := mkv.NewReader(bytes.NewReader(b))
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("no SimpleBlock: %v", err)
		}
		if e.ID == mkv.IDSimpleBlock {
			return int(e.DataOffset())
		}
	}
}

// TestServeMalformedMatroska: each kind of broken PutMedia body is answered
// with the service's ErrorId, serve stays up, and nothing of the broken
// fragment is stored (the good fragments before it are).
func TestServeMalformedMatroska(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	otherTrack := bytes.Clone(frags[1])
	otherTrack[firstBlockTrack(t, otherTrack)] = 0x82 // track 2, which the header lacks
	var fourTracks bytes.Buffer
	w, err := mkv.NewWriter(&fourTracks, mkv.Header{Tracks: []mkv.Track{
		{Number: 1, Type: mkv.TrackTypeVideo, CodecID: "V_MPEG4/ISO/AVC", Width: 64, Height: 64},
		{Number: 2, Type: mkv.TrackTypeAudio, CodecID: "A_AAC", SamplingFrequency: 48000, Channels: 2},
		{Number: 3, Type: mkv.TrackTypeAudio, CodecID: "A_AAC", SamplingFrequency: 48000, Channels: 2},
		{Number: 4, Type: mkv.TrackTypeAudio, CodecID: "A_AAC", SamplingFrequency: 48000, Channels: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	// A Cluster of 17 bytes holding a Timecode (now, later than the
	// fragments) and a SimpleBlock that claims 4096.
	overflow := []byte{0x1F, 0x43, 0xB6, 0x75, 0x91, 0xE7, 0x88}
	overflow = be.BigEndian.AppendUint64(overflow, uint64(time.Now().UnixMilli()))
	overflow = append(overflow, 0xA3, 0x50, 0x00, 0x81, 0x00, 0x00, 0x80)
	cases := []struct {
		name   string
		body   []byte
		id     int
		stored int
	}{
		{"not-matroska", []byte("this is a text file, not Matroska at all\n"), kvs.ErrIDInvalidMKVData, 0},
		{"cluster-before-tracks", frags[0], kvs.ErrIDInvalidMKVData, 0},
		{"overflowing-element", cat(header, frags[0], overflow), kvs.ErrIDInvalidMKVData, 1},
		{"unknown-track", cat(header, frags[0], otherTrack), kvs.ErrIDTrackNumberMismatch, 1},
		{"timecode-backwards", cat(header, frags[1], frags[0]), kvs.ErrIDTimecodeNotMonotonic, 1},
		{"too-many-tracks", fourTracks.Bytes(), kvs.ErrIDTooManyTracks, 0},
	}
	for _, c := range cases {
		if code := call(t, srv.url, "/createStream", map[string]any{"StreamName": c.name, "DataRetentionInHours": 1}, nil); code != 200 {
			t.Fatalf("%s: createStream %d", c.name, code)
		}
	}
	waitActive := func(name string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var d struct{ StreamInfo struct{ Status string } }
			if call(t, srv.url, "/describeStream", map[string]any{"StreamName": name}, &d) == 200 && d.StreamInfo.Status == "ACTIVE" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became ACTIVE", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, c := range cases {
		waitActive(c.name)
		acks := putAll(t, srv.url, c.name, c.body)
		var errAck *kvs.Ack
		persisted := 0
		for i, a := range acks {
			switch a.EventType {
			case kvs.AckError:
				errAck = &acks[i]
			case kvs.AckPersisted:
				persisted++
			}
		}
		if errAck == nil || errAck.ErrorID != c.id {
			t.Errorf("%s: acks %+v, want ERROR %d", c.name, acks, c.id)
		}
		var list struct{ Fragments []json.RawMessage }
		if code := call(t, srv.url, "/listFragments", map[string]any{"StreamName": c.name}, &list); code != 200 ||
			len(list.Fragments) != c.stored || persisted != c.stored {
			t.Errorf("%s: %d fragments stored, %d PERSISTED, want %d", c.name, len(list.Fragments), persisted, c.stored)
		}
	}
	if strings.Contains(srv.log.String(), "panic") {
		t.Fatalf("serve's log has a panic:\n%s", srv.log.String())
	}
}
