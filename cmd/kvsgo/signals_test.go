package main

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStopOnSignals: the first SIGTERM ends the context (deliver what is
// buffered), the second signal quits at once with 128 + its number.
func TestStopOnSignals(t *testing.T) {
	var logs lockedBuffer
	exited := make(chan int, 1)
	ctx, stop := stopOnSignals(slog.New(slog.NewTextHandler(&logs, nil)), func(code int) { exited <- code }, "what was not yet persisted is lost")
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop")
	}
	select {
	case code := <-exited:
		t.Fatalf("quit at the first signal (%d)", code)
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 130 {
			t.Fatalf("exit status %d after SIGINT, want 130", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not quit")
	}
	if l := logs.String(); !strings.Contains(l, "delivering what is buffered") || !strings.Contains(l, "quitting at once") {
		t.Fatalf("log:\n%s", l)
	}
}
