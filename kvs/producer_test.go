package kvs

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvsgo/kvsgo/media"
)

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) messages(t EventType) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Type == t {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestProducerDeliversAndCloses(t *testing.T) {
	srv := newFakeKVS(t)
	var got int
	var mu sync.Mutex
	srv.onFrame = func([]byte) { mu.Lock(); got++; mu.Unlock() }
	log := &eventLog{}
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
		Credentials: testCreds(), Region: "us-east-1", OnEvent: log.add}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	for i := range 95 {
		if err := p.Put(stampedFrame(buf, i, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Frames != 95 || st.Fragments != 4 || st.Persisted != 4 || st.BufferedFragments != 0 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 95 {
		t.Fatalf("server got %d frames", got)
	}
	if len(log.messages(EventConnected)) != 1 {
		t.Fatalf("events %v", log.events)
	}
}

func TestProducerDropsOldestWhenBufferIsFull(t *testing.T) {
	srv := newFakeKVS(t)
	srv.silent = true // nothing is ever acknowledged
	log := &eventLog{}
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
		Credentials: testCreds(), Region: "us-east-1", OnEvent: log.add, BufferDuration: 3 * time.Second,
		AckTimeout: time.Hour, CloseTimeout: 200 * time.Millisecond}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for i := range 30 * 10 { // 10 s, a fragment a second
		if err := p.Put(stampedFrame(buf, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats()
	if st.BufferedDuration > 3*time.Second || st.DroppedFragments < 5 {
		t.Fatalf("buffered %s, dropped %d", st.BufferedDuration, st.DroppedFragments)
	}
	if msgs := log.messages(EventDropped); len(msgs) == 0 || !strings.Contains(msgs[0], "buffer full") {
		t.Fatalf("drop not reported: %v", msgs)
	}
	if _, err := p.Close(context.Background()); err == nil || !strings.Contains(err.Error(), "not acknowledged") {
		t.Fatalf("close of an unacknowledged stream: %v", err)
	}
}

func TestProducerWarnsAboutTheSource(t *testing.T) {
	srv := newFakeKVS(t)
	log := &eventLog{}
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
		Credentials: testCreds(), Region: "us-east-1", OnEvent: log.add}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(ms int, key bool, dts int) media.Frame {
		return media.Frame{Track: 1, PTS: time.Duration(ms) * time.Millisecond, DTS: time.Duration(dts) * time.Millisecond, Key: key, Data: []byte{0, 0, 0, 1, 0x65}}
	}
	p.Put(frame(0, true, 0))
	p.Put(frame(66, false, 33)) // a B-frame: presented after it is decoded
	for ms := 100; ms < 25000; ms += 100 {
		p.Put(frame(ms, false, ms)) // still no key frame at 21 s
	}
	p.Put(frame(25000, true, 25000))
	if _, err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	warnings := strings.Join(log.messages(EventWarning), "\n")
	for _, want := range []string{"B-frames", "key frames come every 25s", "no key frame for 20 s"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("no warning about %q in:\n%s", want, warnings)
		}
	}
}

func newTestProducer(t *testing.T, srv *fakeKVS, cfg ProducerConfig) (*Producer, *eventLog) {
	t.Helper()
	log := &eventLog{}
	cfg.Stream, cfg.ControlPlane, cfg.Credentials, cfg.Region, cfg.OnEvent = StreamSetup{Name: "s"}, srv, testCreds(), "us-east-1", log.add
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	}
	p, err := NewProducer(context.Background(), cfg, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	return p, log
}

func putSeconds(t *testing.T, p *Producer, secs int) {
	t.Helper()
	buf := make([]byte, 200)
	for i := range 30 * secs {
		if err := p.Put(stampedFrame(buf, i, 200)); err != nil {
			return
		}
	}
}

// TestRetriableErrorsEveryTimeGiveUp: a service that answers every
// fragment with a retriable ERROR is not a working connection: the producer
// gives up, rather than looping for ever.
func TestRetriableErrorsEveryTimeGiveUp(t *testing.T) {
	srv := newFakeKVS(t)
	srv.errorID = 5001
	p, _ := newTestProducer(t, srv, ProducerConfig{GiveUpAfter: 500 * time.Millisecond, CloseTimeout: 10 * time.Second})
	putSeconds(t, p, 3)
	st, err := p.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "5001") && !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("Close: %v", err)
	}
	// What was never acknowledged is counted lost, once, and said so.
	again, _ := p.Close(context.Background())
	if st.Lost.Unacknowledged == 0 || st.Lost.Unacknowledged+st.Lost.Refused != st.Frames-st.Lost.BeforeKeyFrame-int64(30*st.Persisted) ||
		again.Lost.Unacknowledged != st.Lost.Unacknowledged || !strings.Contains(st.Lost.String(), "not acknowledged") {
		t.Fatalf("%d frames, %d persisted fragments, lost %+v (%s); closed again: %+v", st.Frames, st.Persisted, st.Lost, st.Lost, again.Lost)
	}
}

// TestRefusedFragmentIsNotResent: a non-retriable ERROR drops that
// fragment (and the rest of it until the next key frame); it is not sent
// again, and Close reports it.
func TestRefusedFragmentIsNotResent(t *testing.T) {
	srv := newFakeKVS(t)
	srv.errorID = 4002
	p, log := newTestProducer(t, srv, ProducerConfig{CloseTimeout: 2 * time.Second})
	buf := make([]byte, 200)
	_ = p.Put(stampedFrame(buf, 0, 200))
	_ = p.Put(stampedFrame(buf, 30, 200)) // a second fragment completes the first
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Rejected == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	srv.mu.Lock()
	srv.errorID = 0
	srv.mu.Unlock()
	st, err := p.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refused") || st.Rejected == 0 {
		t.Fatalf("Close: %+v %v", st, err)
	}
	if n := srv.sessionCount(); n > 4 {
		t.Fatalf("%d sessions: the refused fragment was sent again and again", n)
	}
	if msgs := log.messages(EventAckError); len(msgs) == 0 || !strings.Contains(msgs[0], "MAX_FRAGMENT_DURATION_REACHED") || !strings.Contains(msgs[0], "key-frame interval") {
		t.Fatalf("error not explained: %v", msgs)
	}
}

// TestCloseIsBoundedWhenNothingIsAcknowledged: a silent service does not
// make Close hang, however often the connection is renewed.
func TestCloseIsBoundedWhenNothingIsAcknowledged(t *testing.T) {
	srv := newFakeKVS(t)
	srv.silent = true
	p, _ := newTestProducer(t, srv, ProducerConfig{AckTimeout: 200 * time.Millisecond, CloseTimeout: time.Second})
	putSeconds(t, p, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Close(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Close: %v (context: %v)", err, ctx.Err())
	}
}

// TestStaleWhenThePeerStopsReading: a connection that takes no data is
// given up after AckTimeout even while a write is blocked in it.
func TestStaleWhenThePeerStopsReading(t *testing.T) {
	srv := newFakeKVS(t)
	srv.noRead = true
	p, log := newTestProducer(t, srv, ProducerConfig{AckTimeout: 300 * time.Millisecond, CloseTimeout: 500 * time.Millisecond})
	putSeconds(t, p, 30) // ~ 200 kB: more than the connection buffers hold
	deadline := time.Now().Add(10 * time.Second)
	for srv.sessionCount() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if srv.sessionCount() < 2 {
		t.Fatalf("never reconnected: %v", log.messages(EventDisconnected))
	}
	_, _ = p.Close(context.Background())
}

// expiringCreds hands out credentials that expire a second from now,
// counting how often they are fetched.
type expiringCreds struct {
	mu    sync.Mutex
	calls int
}

func (e *expiringCreds) Retrieve(context.Context) (aws.Credentials, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(time.Second)}, nil
}

// TestRotatesConnectionsAndCredentials: the connection is renewed at a
// fragment boundary when it gets old, and before its credentials expire,
// with every frame delivered once.
func TestRotatesConnectionsAndCredentials(t *testing.T) {
	for _, c := range []struct {
		name  string
		age   time.Duration
		creds aws.CredentialsProvider
	}{
		{"max age", 300 * time.Millisecond, testCreds()},
		{"expiring credentials", time.Hour, &expiringCreds{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newFakeKVS(t)
			// Each frame is stamped with its own time: the peer counts
			// each one it receives, on every connection.
			got := map[uint64]int{}
			var mu sync.Mutex
			srv.onFrame = func(b []byte) { mu.Lock(); got[binary.BigEndian.Uint64(b)]++; mu.Unlock() }
			p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
				Credentials: c.creds, Region: "us-east-1", MaxConnectionAge: c.age}, testTrack)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 200)
			for i := range 150 { // 5 s of video over about 1.5 s
				_ = p.Put(stampedFrame(buf, i, 200))
				time.Sleep(10 * time.Millisecond)
			}
			st, err := p.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if srv.sessionCount() < 2 || st.Persisted < 5 {
				t.Fatalf("%d sessions, %d persisted", srv.sessionCount(), st.Persisted)
			}
			// Exactly once at the peer: a rotation that does not wait for
			// the old connection's last acks sends its fragments again.
			received := 0
			for _, n := range got {
				received += n
			}
			if len(got) != 150 || received != 150 {
				t.Fatalf("the peer got %d frames, %d different, for 150 sent once each", received, len(got))
			}
			if e, ok := c.creds.(*expiringCreds); ok && e.calls < 2 {
				t.Fatalf("credentials fetched %d times", e.calls)
			}
		})
	}
}

// TestNewHeaderOnTheSameConnectionAndOnResend: new tracks mid-stream go
// out as a new header before the next fragment, on the same connection;
// after a reconnect, each fragment sent again is preceded by the header it
// belongs to.
func TestNewHeaderOnTheSameConnectionAndOnResend(t *testing.T) {
	for _, c := range []struct {
		name   string
		dropAt int
	}{{"one connection", 0}, {"reconnect", 3}} {
		t.Run(c.name, func(t *testing.T) {
			srv := newFakeKVS(t)
			srv.dropAt = c.dropAt
			var got int
			srv.onFrame = func([]byte) { srv.mu.Lock(); got++; srv.mu.Unlock() }
			p, _ := newTestProducer(t, srv, ProducerConfig{})
			buf := make([]byte, 200)
			for i := range 90 {
				_ = p.Put(stampedFrame(buf, i, 200))
			}
			bigger := testTrack[0]
			bigger.Width, bigger.Height = 128, 96
			if err := p.SetTracks([]media.Track{bigger}); err != nil {
				t.Fatal(err)
			}
			for i := range 60 { // timestamps start again: a jump back
				_ = p.Put(stampedFrame(buf, i, 200))
			}
			st, err := p.Close(context.Background())
			if err != nil || st.Lost.Total() != 0 || st.Fragments != 5 {
				t.Fatalf("Close: %v, %+v", err, st)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if got < 150 {
				t.Fatalf("the peer got %d frames of 150", got)
			}
			var shape [][]string
			for _, s := range srv.log {
				var ev []string
				for _, e := range s {
					if e[0] == 'C' {
						e = "C"
					}
					ev = append(ev, e)
				}
				shape = append(shape, ev)
			}
			want := [][]string{{"H64", "C", "C", "C", "H128", "C", "C"}}
			if c.dropAt != 0 {
				// The first connection dies at the third fragment; the
				// second starts again there, under the first header.
				want = [][]string{{"H64", "C", "C"}, {"H64", "C", "H128", "C", "C"}}
			}
			if fmt.Sprint(shape) != fmt.Sprint(want) {
				t.Fatalf("sessions %v, want %v", shape, want)
			}
		})
	}
}

// TestSetTracksRefusesWhatAStreamCannotCarry: a codec change or a fourth
// track is refused with a message that says what to do.
func TestSetTracksRefusesWhatAStreamCannotCarry(t *testing.T) {
	srv := newFakeKVS(t)
	p, _ := newTestProducer(t, srv, ProducerConfig{})
	defer p.Close(context.Background())
	h265 := testTrack[0]
	h265.CodecID = media.CodecH265
	if err := p.SetTracks([]media.Track{h265}); err == nil || !strings.Contains(err.Error(), "one codec per track") {
		t.Fatalf("codec change: %v", err)
	}
	four := []media.Track{testTrack[0], testTrack[0], testTrack[0], testTrack[0]}
	if err := p.SetTracks(four); err == nil || !strings.Contains(err.Error(), "at most 3") {
		t.Fatalf("four tracks: %v", err)
	}
	if err := p.SetTracks(testTrack); err != nil {
		t.Fatalf("the same tracks again: %v", err)
	}
}

// TestAddLostCountsTheSourcesLosses: frames a source could not put (before
// the producer existed too) are in Stats.Lost beside the producer's own,
// by reason, and count as unexpected; the frames put are all delivered.
func TestAddLostCountsTheSourcesLosses(t *testing.T) {
	srv := newFakeKVS(t)
	p, _ := newTestProducer(t, srv, ProducerConfig{})
	p.AddLost(Losses{BeforeKeyFrame: 4})
	buf := make([]byte, 100)
	for i := range 60 {
		if err := p.Put(stampedFrame(buf, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	p.AddLost(Losses{Undecodable: 5, Damaged: 1})
	p.AddLost(Losses{BeforeKeyFrame: 2})
	st, err := p.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Losses{BeforeKeyFrame: 6, Undecodable: 5, Damaged: 1}
	if st.Lost != want || st.Lost.Total() != 12 || st.Lost.Unexpected() != 12 || st.Frames != 60 || st.Persisted != st.Fragments {
		t.Fatalf("stats %+v", st)
	}
	if s := st.Lost.String(); !strings.Contains(s, "6 before the first key frame") || !strings.Contains(s, "5 needing frames the input does not give") ||
		!strings.Contains(s, "1 damaged or missing in the input") {
		t.Fatalf("losses say %q", s)
	}
}
