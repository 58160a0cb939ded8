package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

type sink struct{ strings.Builder }

// TestViewKeepsLogsAbove: a line per stream; a log line written between
// two updates erases the lines, is written, and the lines come back under
// it, so nothing is drawn over.
func TestViewKeepsLogsAbove(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out sink
	v := NewView(&out, func() time.Time { return now })
	v.Update([]Status{
		{Name: "porch", State: Streaming, HasStats: true, Stats: kvs.Stats{Frames: 30, Fragments: 3, Persisted: 2, Connected: true, LastAckLatency: 120 * time.Millisecond}},
		{Name: "gate", State: Retrying, Err: errors.New("no such device"), RetryAt: now.Add(4 * time.Second), Restarts: 2},
	})
	first := out.String()
	for _, want := range []string{"porch  streaming   30.0 fps", "fragments 3 sent 2 persisted  ack 120ms", "gate   retrying in 4s  (2 restarts): no such device"} {
		if !strings.Contains(first, want) {
			t.Errorf("view lacks %q:\n%q", want, first)
		}
	}
	if strings.Count(first, "\n") != 2 {
		t.Errorf("%d lines drawn for 2 streams: %q", strings.Count(first, "\n"), first)
	}
	out.Reset()
	if _, err := v.Write([]byte("time=… level=INFO msg=hello\n")); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	erase := "\r\033[2A\033[J"
	if !strings.HasPrefix(got, erase+"time=… level=INFO msg=hello\n") || !strings.Contains(got[len(erase):], "porch") {
		t.Fatalf("a log line is not written above the lines: %q", got)
	}
	// The next second: the rate is of that second, for a new producer too.
	out.Reset()
	v.Update([]Status{{Name: "porch", State: Streaming, HasStats: true, Stats: kvs.Stats{Frames: 55, Connected: true}}})
	if !strings.Contains(out.String(), "porch  streaming   25.0 fps") {
		t.Errorf("rate: %q", out.String())
	}
}
