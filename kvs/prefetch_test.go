package kvs

import (
	"context"
	"errors"
	"sync"
	"testing"
)

type countingControlPlane struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (c *countingControlPlane) PrepareStream(_ context.Context, s StreamSetup) (string, int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s.Name)
	return "http://" + s.Name, int32(len(c.calls)), c.err
}

// TestPrefetchAnswersTheFirstCallOnce: the lookup runs at once; the first
// PrepareStream for the stream takes its answer without asking again, and
// the next one (a reconnect) asks the control plane.
func TestPrefetchAnswersTheFirstCallOnce(t *testing.T) {
	cp := &countingControlPlane{}
	s := StreamSetup{Name: "cam"}
	pf := Prefetch(context.Background(), cp, s)
	ep, ret, err := pf.PrepareStream(context.Background(), s)
	if err != nil || ep != "http://cam" || ret != 1 {
		t.Fatalf("first call: %q %d %v", ep, ret, err)
	}
	if _, ret, _ := pf.PrepareStream(context.Background(), s); ret != 2 {
		t.Fatalf("the second call did not ask again (answer %d)", ret)
	}
	if len(cp.calls) != 2 {
		t.Fatalf("%d calls, want 2", len(cp.calls))
	}
}

// TestPrefetchPassesOnItsError: a failed lookup is the first call's
// error, as if it had been made then (the producer decides whether to
// retry), and the retry asks again.
func TestPrefetchPassesOnItsError(t *testing.T) {
	cp := &countingControlPlane{err: ErrNoStream}
	s := StreamSetup{Name: "cam"}
	pf := Prefetch(context.Background(), cp, s)
	if _, _, err := pf.PrepareStream(context.Background(), s); !errors.Is(err, ErrNoStream) {
		t.Fatalf("err = %v", err)
	}
	cp.mu.Lock()
	cp.err = nil
	cp.mu.Unlock()
	if ep, _, err := pf.PrepareStream(context.Background(), s); err != nil || ep != "http://cam" {
		t.Fatalf("retry: %q %v", ep, err)
	}
}
