package kvs

import (
	"context"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// TestPutWritesToTheSocketItself: once the connection is up and has sent
// what was buffered, each Put hands its frame to the socket before it
// returns; no other goroutine has to wake up for it.
func TestPutWritesToTheSocketItself(t *testing.T) {
	srv := newFakeKVS(t)
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
		Credentials: testCreds(), Region: "us-east-1"}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := p.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	data := make([]byte, 4000)
	frame := func(i int) media.Frame {
		ts := time.Duration(i) * time.Second / 30
		return media.Frame{Track: 1, PTS: ts, DTS: ts, Key: i == 0, Data: data}
	}
	if err := p.Put(frame(0)); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(frame(1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().BytesSent < 4000 {
		if time.Now().After(deadline) {
			t.Fatal("the first frame never went out")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 2; i < 100; i++ {
		before := p.Stats().BytesSent
		if err := p.Put(frame(i)); err != nil {
			t.Fatal(err)
		}
		if after := p.Stats().BytesSent; after < before+int64(len(data)) {
			t.Fatalf("frame %d: Put returned with %d bytes sent, %d before: the frame was left to another goroutine", i, after, before)
		}
	}
}
