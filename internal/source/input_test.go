package source

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// waitSink collects frames and says when it has n video frames.
type waitSink struct {
	mu     sync.Mutex
	frames []media.Frame
	n      int
	reach  chan struct{}
}

func newWaitSink(n int) *waitSink { return &waitSink{n: n, reach: make(chan struct{})} }

func (w *waitSink) Start([]media.Track) error { return nil }

func (w *waitSink) Frame(f media.Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, f)
	video := 0
	for _, f := range w.frames {
		if f.Track == 1 {
			video++
		}
	}
	if video == w.n && f.Track == 1 {
		close(w.reach)
	}
	return nil
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestStdinStopsWhileAPipeStalls: standard input as the shell gives it (a
// blocking pipe) delivers its frames, then goes quiet without closing;
// ending the context ends the source at once, blocked read and all, as a
// stop and not a failure, and leaves no descriptor open.
func TestStdinStopsWhileAPipeStalls(t *testing.T) {
	data := mediatest.ReadFixture(t, "clip-a.ts")
	before := openFDs(t)
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "stdin"), os.NewFile(uintptr(fds[1]), "writer")
	defer w.Close()
	wrote := make(chan error, 1)
	go func() { _, err := w.Write(data); wrote <- err }()

	src, _, err := Open("-", Options{Stdin: r})
	if err != nil {
		t.Fatal(err)
	}
	sink := newWaitSink(59) // the 60th frame waits for a PES that never starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()
	select {
	case <-sink.reach:
	case err := <-done:
		t.Fatalf("the source ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the frames written never arrived")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	waitBlockedRead(t) // the pipe is open and quiet: a read is blocked
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopping a stalled stdin: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked read held the stop")
	}
	r.Close()
	w.Close()
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

// waitBlockedRead waits until a goroutine is blocked reading an input
// (waiting for the poller in ctxReader.Read), so that the test stops a
// blocked read and not one about to start.
func waitBlockedRead(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "(*ctxReader).Read") {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no read blocked")
}

// blockingReader blocks until released, like a read of a terminal.
type blockingReader struct{ entered, release chan struct{} }

func (b *blockingReader) Read(p []byte) (int, error) {
	close(b.entered)
	<-b.release
	return 0, io.EOF
}

// TestAbandonableReader: where a read cannot be interrupted, Read gives
// up when the context ends, and the reading goroutine ends with the read.
func TestAbandonableReader(t *testing.T) {
	br := &blockingReader{entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	a := newAbandonableReader(ctx, br)
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 10))
		done <- err
	}()
	<-br.entered
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not give up")
	}
	close(br.release)
	// The goroutine delivers its result into the buffered channel and ends.
	select {
	case r := <-a.got:
		if !errors.Is(r.err, io.EOF) {
			t.Fatalf("the abandoned read ended with %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reading goroutine did not end")
	}
}

// TestStalledProgramStops: a program that stops writing but keeps its
// output open, ignores SIGINT, and has a child holding its output, does not
// hold a stop beyond its StopTimeout.
func TestStalledProgramStops(t *testing.T) {
	// A child in the background holds the output open too: killing the
	// program does not close it.
	p := Exec("trap '' INT; sleep 300 & cat "+mediatest.Fixture(t, "h264-baseline.h264")+"; wait", Options{})
	p.StopTimeout = 200 * time.Millisecond
	sink := newWaitSink(88) // the last two wait for a start code that never comes
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, sink) }()
	select {
	case <-sink.reach:
	case <-time.After(20 * time.Second):
		t.Fatal("no frames")
	}
	waitBlockedRead(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopping: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled program held the stop")
	}
}
