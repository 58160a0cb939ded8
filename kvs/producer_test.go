package kvs

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

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
	p.Put(frame(66, false, 33))       // a B-frame: presented after it is decoded
	p.Put(frame(21000, false, 21000)) // still no key frame
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
