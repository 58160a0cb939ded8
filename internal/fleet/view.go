package fleet

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// View draws a line per stream at the bottom of a terminal, redrawn every
// second. Log lines go through it (Write), so they scroll above the
// lines instead of being drawn over.
type View struct {
	mu    sync.Mutex
	w     io.Writer
	drawn int // lines on screen now
	lines []string
	last  map[string]kvs.Stats
	now   func() time.Time
}

// NewView draws on w, a terminal.
func NewView(w io.Writer, now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	return &View{w: w, last: map[string]kvs.Stats{}, now: now}
}

// Write writes a log line above the status lines.
func (v *View) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.erase()
	n, err := v.w.Write(p)
	v.draw()
	return n, err
}

// Run redraws every second until ctx ends, then leaves the screen
// without its lines.
func (v *View) Run(ctx context.Context, s *Supervisor) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			v.mu.Lock()
			v.erase()
			v.lines = nil
			v.mu.Unlock()
			return
		case <-t.C:
		}
		v.Update(s.Status())
	}
}

// Update redraws with these streams' states (once a second: rates are
// per second).
func (v *View) Update(sts []Status) {
	lines := make([]string, 0, len(sts))
	width := 0
	for _, st := range sts {
		width = max(width, len(st.Name))
	}
	for _, st := range sts {
		lines = append(lines, v.line(st, width))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.erase()
	v.lines = lines
	v.draw()
}

func (v *View) line(st Status, width int) string {
	name := fmt.Sprintf("%-*s", width, st.Name)
	last := v.last[st.Name]
	if st.HasStats {
		v.last[st.Name] = st.Stats
	} else {
		delete(v.last, st.Name)
	}
	switch {
	case st.State == Retrying:
		return fmt.Sprintf("%s  retrying in %s  (%d restarts): %v", name,
			max(st.RetryAt.Sub(v.now()), 0).Round(time.Second), st.Restarts, st.Err)
	case !st.HasStats:
		return fmt.Sprintf("%s  %s", name, st.State)
	}
	s := st.Stats
	state := string(st.State)
	if st.State == Streaming && !s.Connected {
		state = "connecting"
	}
	if s.Frames < last.Frames {
		last = kvs.Stats{} // a new producer
	}
	return fmt.Sprintf("%s  %-10s %5.1f fps  %5.2f Mbit/s  fragments %d sent %d persisted  ack %s  buffered %s",
		name, state, float64(s.Frames-last.Frames), float64(s.BytesSent-last.BytesSent)*8/1e6,
		s.Fragments, s.Persisted, s.LastAckLatency.Round(time.Millisecond), s.BufferedDuration.Round(100*time.Millisecond))
}

// erase clears the lines drawn; v.mu held.
func (v *View) erase() {
	if v.drawn == 0 {
		return
	}
	// Up to the first line, then clear to the end of the screen.
	fmt.Fprintf(v.w, "\r\033[%dA\033[J", v.drawn)
	v.drawn = 0
}

// draw draws the lines; v.mu held. Each ends with a newline so that a
// log line written next starts at the left.
func (v *View) draw() {
	if len(v.lines) == 0 {
		return
	}
	// Without wrapping, a line wider than the terminal is cut, so
	// erase's count of lines stays right.
	var b strings.Builder
	b.WriteString("\033[?7l")
	for _, l := range v.lines {
		b.WriteString(l)
		b.WriteString("\033[K\n")
	}
	b.WriteString("\033[?7h")
	io.WriteString(v.w, b.String())
	v.drawn = len(v.lines)
}
