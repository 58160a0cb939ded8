package e2e

// Conformance with the service, items 1–3 of issue 14 (data): numbering,
// deletion, and GetMedia at the live edge. Each runs the real binary.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// acksOf collects a session's acks until n of event have come; an ERROR ack
// or the end of the session fails the test.
func acksOf(t *testing.T, s *session, event kvs.AckEvent, n int) []string {
	t.Helper()
	var numbers []string
	deadline := time.After(30 * time.Second)
	for len(numbers) < n {
		select {
		case a, ok := <-s.acks:
			if !ok {
				t.Fatalf("the session ended after %d %s acks of %d: %v", len(numbers), event, n, <-s.done)
			}
			if a.EventType == kvs.AckError {
				t.Fatalf("ERROR ack %+v", a)
			}
			if a.EventType == event {
				numbers = append(numbers, a.FragmentNumber)
			}
		case <-deadline:
			t.Fatalf("only %d %s acks of %d", len(numbers), event, n)
		}
	}
	return numbers
}

// sendAll streams header and fragments in one session that ends its body,
// and returns the PERSISTED fragment numbers in order.
func sendAll(t *testing.T, base, stream string, header []byte, fragments [][]byte) []string {
	t.Helper()
	s := openSession(t, base, stream)
	if _, err := s.body.Write(header); err != nil {
		t.Fatal(err)
	}
	for _, f := range fragments {
		if _, err := s.body.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	s.body.Close()
	numbers := acksOf(t, s, kvs.AckPersisted, len(fragments))
	for range s.acks { // the session ends: the stream's one connection is free again
	}
	return numbers
}

type listedFragment struct {
	FragmentNumber               string
	ProducerTimestamp            float64
	ServerTimestamp              float64
	FragmentLengthInMilliseconds int64
}

func listAll(t *testing.T, base, stream string) []listedFragment {
	t.Helper()
	var out struct{ Fragments []listedFragment }
	callOK(t, base, "/listFragments", map[string]any{"StreamName": stream}, &out)
	slices.SortFunc(out.Fragments, func(a, b listedFragment) int { return strings.Compare(a.FragmentNumber, b.FragmentNumber) })
	return out.Fragments
}

// TestEveryFragmentNumberedAnew (item 1): a second PutMedia whose cluster
// timecodes equal stored ones but whose pictures differ is stored, under new
// fragment numbers, and PERSISTED only because it was; a producer's
// byte-for-byte resend is stored once and acknowledged with the numbers it
// has.
func TestEveryFragmentNumberedAnew(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "anew", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", start)

	first := sendAll(t, srv.url, "anew", header, frags)
	other := make([][]byte, len(frags))
	for i, f := range frags {
		other[i] = bytes.Clone(f)
		other[i][len(f)-1] ^= 0xff // the last frame's last byte: another picture, same timecodes
	}
	second := sendAll(t, srv.url, "anew", header, other)
	for i := range second {
		if slices.Contains(first, second[i]) || (i > 0 && second[i] <= second[i-1]) || second[i] <= first[len(first)-1] {
			t.Fatalf("second session's fragment numbers %v do not follow the first's %v anew", second, first)
		}
	}
	listed := listAll(t, srv.url, "anew")
	if len(listed) != 2*len(frags) {
		t.Fatalf("ListFragments: %d fragments, want %d (both sessions)", len(listed), 2*len(frags))
	}
	for i := range frags {
		if listed[i].ProducerTimestamp != listed[i+len(frags)].ProducerTimestamp {
			t.Fatalf("fragments %d and %d should share a producer timestamp: %v", i, i+len(frags), listed)
		}
	}
	// What is stored under the second numbers is the second session's data.
	var raw bytes.Buffer
	if code := callRaw(t, srv.url, "/getMediaForFragmentList", map[string]any{"StreamName": "anew", "Fragments": second}, &raw); code != 200 {
		t.Fatalf("getMediaForFragmentList: %d %s", code, raw.Bytes())
	}
	chunks, _, err := readChunks(&raw, func(mediaChunk) bool { return true })
	if err != nil || len(chunks) != len(frags) {
		t.Fatalf("%d chunks: %v", len(chunks), err)
	}
	for i, c := range chunks {
		if c.number() != second[i] || c.Data[len(c.Data)-1] != other[i][len(other[i])-1] {
			t.Fatalf("fragment %s does not hold the second session's pictures", c.number())
		}
	}

	// The first session sent again, byte for byte: no new fragments, and
	// the numbers it was stored under.
	if again := sendAll(t, srv.url, "anew", header, frags); !slices.Equal(again, first) {
		t.Fatalf("a byte-identical resend was acknowledged as %v; it is stored as %v", again, first)
	}
	if n := len(listAll(t, srv.url, "anew")); n != 2*len(frags) {
		t.Fatalf("after the resend: %d fragments, want %d", n, 2*len(frags))
	}
}

// TestDeleteStreamEndsItsSessions (item 2): DeleteStream ends the old
// stream's PutMedia session (ERROR 4507) and GetMedia readers (in-band
// error), its data is gone at once, a stream created again under the name
// has a new ARN and nothing of the old one, and it takes one PutMedia
// connection.
func TestDeleteStreamEndsItsSessions(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	old := createActive(t, srv.url, "cam", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", start)

	s := openSession(t, srv.url, "cam")
	s.body.Write(header)
	s.body.Write(frags[0])
	s.body.Write(frags[1])
	s.body.Write(frags[2][:len(frags[2])/2]) // completes fragment 1; 2 is open
	acksOf(t, s, kvs.AckPersisted, 2)
	earliest := startGetMedia(t, srv.url, "cam", map[string]any{"StartSelectorType": "EARLIEST"})
	earliest.next(t, 10*time.Second)
	earliest.next(t, 10*time.Second)
	now := startGetMedia(t, srv.url, "cam", map[string]any{"StartSelectorType": "NOW"})
	if code := <-now.status; code != 200 {
		t.Fatalf("GetMedia NOW: %d", code)
	}

	deletedAt := time.Now()
	awsCLI(t, srv.url, "kinesisvideo", "delete-stream", "--stream-arn", old.StreamARN)

	// The producer is told, and its response ends.
	var errAck *kvs.Ack
	for a := range s.acks {
		if a.EventType == kvs.AckError {
			errAck = &a
		}
	}
	if errAck == nil || errAck.ErrorID != 4507 || errAck.ErrorCode != "STREAM_DELETED" {
		t.Fatalf("the producer of the deleted stream got %+v, want ERROR 4507 STREAM_DELETED", errAck)
	}
	t.Logf("the producer's session ended %s after delete-stream started (the AWS CLI's own start-up included)", time.Since(deletedAt).Round(time.Millisecond))
	// So are the readers: an in-band error, then the end.
	for name, r := range map[string]*getMediaReader{"EARLIEST": earliest, "NOW": now} {
		res := r.wait(t, 20*time.Second)
		if !res.ended || len(res.chunks) == 0 || res.chunks[len(res.chunks)-1].errorID() != "4000" {
			t.Fatalf("GetMedia %s reader of the deleted stream: ended %v, chunks %v, err %v", name, res.ended, len(res.chunks), res.err)
		}
	}
	// The data is gone at once.
	if r := post(t, srv.url, "/listFragments", map[string]any{"StreamName": "cam"}, creds, time.Time{}, nil); r.Status != 404 || r.errorType() != "ResourceNotFoundException" {
		t.Fatalf("ListFragments right after DeleteStream: %d %s", r.Status, r.errorType())
	}

	// Created again: a new stream.
	var fresh streamInfo
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := post(t, srv.url, "/createStream", map[string]any{"StreamName": "cam", "DataRetentionInHours": 24}, creds, time.Time{}, nil)
		if r.Status == 200 {
			break
		}
		if r.errorType() != "ResourceInUseException" || time.Now().After(deadline) {
			t.Fatalf("create again: %d %s %s", r.Status, r.errorType(), r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fresh = waitStatus(t, srv.url, "cam", "ACTIVE")
	if fresh.StreamARN == old.StreamARN {
		t.Fatalf("the re-created stream has the old ARN %s", old.StreamARN)
	}
	if got := listAll(t, srv.url, "cam"); len(got) != 0 {
		t.Fatalf("the re-created stream has %d fragments of the old one", len(got))
	}
	// One PutMedia connection, and what it stores is after the creation.
	s2 := openSession(t, srv.url, "cam")
	s2.body.Write(header)
	s2.body.Write(frags[0])
	s2.body.Write(frags[1][:10])
	acksOf(t, s2, kvs.AckPersisted, 1)
	r, _ := putMediaOnce(t, srv.url, "cam", header, creds, time.Time{}, nil)
	if r.Status != 400 || r.errorType() != "ConnectionLimitExceededException" {
		t.Fatalf("a second PutMedia connection: %d %s", r.Status, r.errorType())
	}
	s2.body.Close()
	for _, f := range listAll(t, srv.url, "cam") {
		if f.ServerTimestamp < fresh.CreationTime || f.ServerTimestamp < float64(deletedAt.Unix()) {
			t.Fatalf("fragment %s has ServerTimestamp %.3f, before the stream's CreationTime %.3f", f.FragmentNumber, f.ServerTimestamp, fresh.CreationTime)
		}
	}
}

// TestGetMediaWaitsAtTheLiveEdge (item 3): GetMedia waits for data at the
// live edge before any producer connects, while a producer is away (its
// connection broke) and after a serve restart; a reader that has caught up
// with the end of the producer's stream (its body finished) is ended a few
// seconds later. A future SERVER_TIMESTAMP starts with the first fragment
// that reaches it.
func TestGetMediaWaitsAtTheLiveEdge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv := startServeAt(t, listen, serveArgs(dir)...)
	createActive(t, srv.url, "edge", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	var header []byte
	var frags [][]byte
	for k := range 3 {
		h, f, _ := fixtureFragments(t, "h264-baseline.h264", start.Add(time.Duration(k)*3*time.Second))
		header, frags = h, append(frags, f...)
	}

	// A NOW reader before any producer: it waits.
	now := startGetMedia(t, srv.url, "edge", map[string]any{"StartSelectorType": "NOW"})
	if code := <-now.status; code != 200 {
		t.Fatalf("GetMedia NOW: %d", code)
	}
	time.Sleep(time.Second) // the producer starts a second later
	s := openSession(t, srv.url, "edge")
	s.body.Write(header)
	for _, f := range frags[:3] {
		s.body.Write(f)
	}
	s.body.Write(frags[3][:20]) // completes fragment 2
	acksOf(t, s, kvs.AckPersisted, 3)
	for range 3 {
		now.next(t, 10*time.Second)
	}

	// The producer's connection breaks off; it is back after 4 s, longer
	// than the 3 s a reader waits after a producer ended its stream.
	s.body.CloseWithError(errors.New("network down"))
	<-s.done
	time.Sleep(4 * time.Second)
	select {
	case r := <-now.done:
		t.Fatalf("GetMedia ended while the producer was away: %+v", r)
	default:
	}
	s = openSession(t, srv.url, "edge")
	s.body.Write(header)
	for _, f := range frags[3:6] {
		s.body.Write(f)
	}
	s.body.Close() // the end of the producer's stream
	acksOf(t, s, kvs.AckPersisted, 3)
	ended := time.Now()
	res := now.wait(t, 20*time.Second)
	if !res.ended {
		t.Fatalf("GetMedia did not end after the producer ended its stream: %v", res.err)
	}
	if len(res.chunks) != 6 {
		t.Fatalf("the reader got %d fragments, want 6 (both sessions)", len(res.chunks))
	}
	if d := time.Since(ended); d > 10*time.Second {
		t.Fatalf("GetMedia ended %s after the producer's stream", d)
	} else {
		t.Logf("GetMedia ended %s after the producer ended its stream", d.Round(time.Millisecond))
	}

	// After a serve restart (the producer cut off by it), a NOW reader
	// waits for the producer to come back.
	s = openSession(t, srv.url, "edge")
	s.body.Write(header)
	s.body.Write(frags[6])
	s.body.Write(frags[7][:20])
	acksOf(t, s, kvs.AckPersisted, 1)
	_ = srv.cmd.Process.Kill()
	_ = srv.cmd.Wait()
	s.body.Close()
	srv = startServeAt(t, listen, serveArgs(dir)...)
	now = startGetMedia(t, srv.url, "edge", map[string]any{"StartSelectorType": "NOW"})
	earliest := startGetMedia(t, srv.url, "edge", map[string]any{"StartSelectorType": "EARLIEST"})
	for range 7 {
		earliest.next(t, 10*time.Second)
	}
	time.Sleep(4 * time.Second)
	s = openSession(t, srv.url, "edge")
	s.body.Write(header)
	for _, f := range frags[7:9] {
		s.body.Write(f)
	}
	s.body.Close()
	acksOf(t, s, kvs.AckPersisted, 2)
	for name, r := range map[string]*getMediaReader{"NOW": now, "EARLIEST": earliest} {
		res := r.wait(t, 20*time.Second)
		if !res.ended || len(res.chunks) < 2 {
			t.Fatalf("GetMedia %s after a restart: ended %v, %d fragments: %v", name, res.ended, len(res.chunks), res.err)
		}
	}

	// A future SERVER_TIMESTAMP: the first fragment sent is the one that
	// reaches it; earlier ones are skipped.
	from := time.Now().Add(1500 * time.Millisecond)
	future := startGetMedia(t, srv.url, "edge", map[string]any{"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": float64(from.UnixMilli()) / 1000})
	h2, more, _ := fixtureFragments(t, "h264-baseline.h264", start.Add(time.Minute))
	s = openSession(t, srv.url, "edge")
	s.body.Write(h2)
	for _, f := range more {
		s.body.Write(f)
		time.Sleep(700 * time.Millisecond) // a camera's pace
	}
	s.body.Close()
	numbers := acksOf(t, s, kvs.AckPersisted, len(more))
	res = future.wait(t, 20*time.Second)
	var want []string
	for _, f := range listAll(t, srv.url, "edge") {
		if slices.Contains(numbers, f.FragmentNumber) && int64(f.ServerTimestamp*1000)+f.FragmentLengthInMilliseconds > from.UnixMilli() {
			want = append(want, f.FragmentNumber)
		}
	}
	var sent []string
	for _, c := range res.chunks {
		sent = append(sent, c.number())
	}
	if len(want) == 0 || len(want) == len(more) || !slices.Equal(sent, want) {
		t.Fatalf("GetMedia from a future server timestamp sent %v; fragments reaching it: %v (of %v)", sent, want, numbers)
	}
}

// errorOf reads an AWS CLI error's name from its stderr.
func errorOf(stderr string) string {
	_, after, ok := strings.Cut(stderr, "An error occurred (")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(after, ")")
	return name
}

// awsCLIFail runs the AWS CLI expecting an error and returns its name and
// message.
func awsCLIFail(t *testing.T, endpoint string, args ...string) (string, string) {
	t.Helper()
	cmd := awsCLICmd(t, endpoint, args...)
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Run(); err == nil {
		t.Fatalf("aws %v succeeded; want an error", args)
	}
	return errorOf(e.String()), e.String()
}

// jsonOf decodes the AWS CLI's output.
func jsonOf(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}
