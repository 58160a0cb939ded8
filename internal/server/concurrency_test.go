package server_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
)

// slowReader hands out data in small pieces with pauses, as a camera does.
type slowReader struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// TestManyStreamsAtOnce ingests several streams at once while GetMedia
// readers follow each of them live; every reader gets every frame. Run
// under -race by ./scripts/test.
func TestManyStreamsAtOnce(t *testing.T) {
	t.Parallel()
	const streams = 8
	data, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/04_putMedia.body"))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := frames(t, data)
	ts := startServer(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for i := range streams {
		name := fmt.Sprintf("cam-%d", i)
		ts.createStream(t, name, 24)
		wg.Add(2)
		started := make(chan struct{})
		go func() {
			defer wg.Done()
			body := &slowReader{data: data, chunk: 16 << 10, pause: 2 * time.Millisecond}
			first := true
			acks, code := putMedia(t, ts.URL, name, io.TeeReader(body, writerFunc(func() {
				if first {
					first = false
					close(started)
				}
			})), "ABSOLUTE")
			if n := countAcks(acks); code != 200 || n[kvs.AckPersisted] != 12 {
				errs <- fmt.Errorf("%s: status %d, acks %v", name, code, n)
			}
		}()
		go func() {
			defer wg.Done()
			<-started
			// The reader may come before the producer's connection is
			// accepted: GetMedia waits for it, and ends once it has caught
			// up with the end of the producer's stream.
			got, _, chunks := frames(t, mustGetMedia(t, ts, name, `{"StartSelectorType":"EARLIEST"}`))
			if chunks != 12 || len(got) != len(want) {
				errs <- fmt.Errorf("%s: reader got %d fragments, %d frames; want 12, %d", name, chunks, len(got), len(want))
				return
			}
			for j := range want {
				if !bytes.Equal(got[j], want[j]) {
					errs <- fmt.Errorf("%s: frame %d differs", name, j)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// writerFunc calls f on every write; used to notice the first body bytes.
type writerFunc func()

func (f writerFunc) Write(p []byte) (int, error) {
	f()
	return len(p), nil
}
