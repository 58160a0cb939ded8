package fleet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// fakeRuns records every run of every stream; a stream named fail-*
// fails at once, the others run until stopped.
type fakeRuns struct {
	mu      sync.Mutex
	starts  map[string]int
	stopped []string
	changed chan struct{}
}

func newFakeRuns() *fakeRuns {
	return &fakeRuns{starts: map[string]int{}, changed: make(chan struct{}, 100)}
}

func (f *fakeRuns) run(ctx context.Context, s Stream, _ *slog.Logger, _ func(*kvs.Producer)) error {
	f.mu.Lock()
	f.starts[s.Name]++
	f.mu.Unlock()
	f.changed <- struct{}{}
	if s.Name[:min(5, len(s.Name))] == "fail-" {
		return errors.New("no such device")
	}
	<-ctx.Done()
	f.mu.Lock()
	f.stopped = append(f.stopped, s.Name)
	f.mu.Unlock()
	return nil
}

func (f *fakeRuns) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts[name]
}

// waitFor waits for cond, checked at every start of a run.
func (f *fakeRuns) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("never: %s", what)
		}
	}
}

func stream(name, source string) Stream {
	return Stream{Name: name, Settings: []Setting{{Key: "stream", Value: name}, {Key: "source", Value: source}}}
}

func TestSupervisorIsolationAndReload(t *testing.T) {
	f := newFakeRuns()
	var backoffs []int
	var bmu sync.Mutex
	s := NewSupervisor(SupervisorConfig{Run: f.run, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backoff: func(n int) time.Duration {
			bmu.Lock()
			backoffs = append(backoffs, n)
			bmu.Unlock()
			return time.Millisecond
		}})
	ch := s.Apply([]Stream{stream("a", "testsrc"), stream("fail-b", "exec:false"), stream("c", "testsrc")})
	if !slices.Equal(ch.Started, []string{"a", "fail-b", "c"}) {
		t.Fatalf("started %v", ch.Started)
	}
	f.waitFor(t, "the failing stream retried 3 times", func() bool { return f.count("fail-b") >= 4 })
	if f.count("a") != 1 || f.count("c") != 1 {
		t.Fatalf("a failing stream restarted the others: a %d, c %d", f.count("a"), f.count("c"))
	}
	bmu.Lock()
	if !slices.Equal(backoffs[:3], []int{0, 1, 2}) {
		t.Errorf("back-off steps %v, want growing", backoffs)
	}
	bmu.Unlock()

	// Reload: a kept, c changed, fail-b removed, d new.
	ch = s.Apply([]Stream{stream("a", "testsrc"), stream("c", "rpicam"), stream("d", "testsrc")})
	if !slices.Equal(ch.Kept, []string{"a"}) || !slices.Equal(ch.Restarted, []string{"c"}) ||
		!slices.Equal(ch.Stopped, []string{"fail-b"}) || !slices.Equal(ch.Started, []string{"d"}) {
		t.Fatalf("reload did %+v", ch)
	}
	f.waitFor(t, "c restarted and d started", func() bool { return f.count("c") == 2 && f.count("d") == 1 })
	if f.count("a") != 1 {
		t.Fatalf("an unchanged stream was restarted: %d runs", f.count("a"))
	}
	var names []string
	for _, st := range s.Status() {
		names = append(names, st.Name)
	}
	if !slices.Equal(names, []string{"a", "c", "d"}) {
		t.Fatalf("status lists %v", names)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	slices.Sort(f.stopped)
	if !slices.Equal(f.stopped, []string{"a", "c", "c", "d"}) {
		t.Fatalf("stopped runs %v", f.stopped)
	}
}

// TestRemovedStreamShownWhileItDelivers: a stream a reload removes stays
// in Status, Stopping, while it delivers what it holds (its /metrics go on
// and /healthz does not count it), and is gone once it has.
func TestRemovedStreamShownWhileItDelivers(t *testing.T) {
	release := make(chan struct{})
	stopping := make(chan struct{})
	run := func(ctx context.Context, s Stream, _ *slog.Logger, _ func(*kvs.Producer)) error {
		<-ctx.Done()
		if s.Name == "gone" {
			close(stopping)
			<-release // delivering what it holds
		}
		return nil
	}
	s := NewSupervisor(SupervisorConfig{Run: run, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.Apply([]Stream{stream("kept", "testsrc"), stream("gone", "testsrc")})
	applied := make(chan Change)
	go func() { applied <- s.Apply([]Stream{stream("kept", "testsrc")}) }()
	<-stopping
	names := func() (out []string) {
		for _, st := range s.Status() {
			out = append(out, st.Name+":"+string(st.State))
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"kept:starting", "gone:stopping"}) {
		t.Fatalf("while it delivers: %v", got)
	}
	rec := httptest.NewRecorder()
	Health(s)(rec, httptest.NewRequest("GET", "/healthz", nil))
	if strings.Contains(rec.Body.String(), "gone") {
		t.Fatalf("/healthz counts a stream stopped on purpose: %s", rec.Body.String())
	}
	close(release)
	if ch := <-applied; !slices.Equal(ch.Stopped, []string{"gone"}) {
		t.Fatalf("reload did %+v", ch)
	}
	if got := names(); !slices.Equal(got, []string{"kept:starting"}) {
		t.Fatalf("after it delivered: %v", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
