package kvs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

// TestPutToTheSocketAllocatesNothing: in steady state, a frame put and
// written to the socket by Put allocates nothing (the peer here only
// reads, so the frames stay in one fragment, whose buffer grows by
// doubling: amortized, well under one allocation a frame).
func TestPutToTheSocketAllocatesNothing(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer peer.Close()
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: &fixedControlPlane{peer.URL},
		Credentials: testCreds(), Region: "us-east-1"}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.cancel()
		<-p.done
	}()
	data := make([]byte, 4000)
	i := 0
	put := func() {
		ts := time.Duration(i) * time.Second / 30
		if err := p.Put(media.Frame{Track: 1, PTS: ts, DTS: ts, Key: i == 0, Data: data}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	put()
	put()
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().BytesSent < 4000 {
		if time.Now().After(deadline) {
			t.Fatal("the first frame never went out")
		}
		time.Sleep(time.Millisecond)
	}
	for range 100 {
		put()
	}
	sent := p.Stats().BytesSent
	if n := testing.AllocsPerRun(200, put); n != 0 {
		t.Errorf("%v allocations per frame", n)
	}
	if got := p.Stats().BytesSent - sent; got < 200*int64(len(data)) {
		t.Fatalf("only %d bytes went out during the measured Puts", got)
	}
}

type fixedControlPlane struct{ url string }

func (f *fixedControlPlane) PrepareStream(context.Context, StreamSetup) (string, int32, error) {
	return f.url, 24, nil
}
