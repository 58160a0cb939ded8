package kvs

import (
	"testing"
	"time"
)

// TestTimelineJumpAheadContinuesOrShowsTheGap: a source whose clock jumps
// ahead continues right after what the stream holds when it is only a
// little late (a loaded machine's pacer), and at the wall clock when it was
// away for longer than a jump (a camera that was gone).
func TestTimelineJumpAheadContinuesOrShowsTheGap(t *testing.T) {
	for _, c := range []struct {
		name string
		late time.Duration // how much later than its due time frame 60 arrives
		want time.Duration // frame 60's distance from frame 59
	}{
		{"late pacer", 89 * ms, 33 * ms},
		{"camera away", 5 * time.Second, 5*time.Second + 33*ms},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := epoch0
			tl := newTimeline(func() time.Time { return now }, time.Second)
			step := 33 * ms
			var last placed
			for i := range 60 {
				now = epoch0.Add(time.Duration(i) * step)
				last = tl.place(1, time.Duration(i)*step, time.Duration(i)*step)
			}
			// The source's clock jumps 600 s ahead.
			now = epoch0.Add(60*step + c.late)
			src := 600*time.Second + 60*step
			got := tl.place(1, src, src)
			if !got.newEpoch {
				t.Fatal("a 600 s jump is not a discontinuity")
			}
			if d := got.dts - last.dts; d < c.want-step || d > c.want+2*ms {
				t.Fatalf("frame 60 is %v after frame 59, want about %v", d, c.want)
			}
			next := tl.place(1, src+step, src+step)
			if d := next.dts - got.dts; d != step {
				t.Fatalf("after the jump, frames are %v apart, want %v", d, step)
			}
		})
	}
}
