package source

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is the pacer's clock in tests: sleeping moves it on.
type fakeClock struct {
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1700000000, 0)} }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return ctx.Err()
}

func (c *fakeClock) longest() time.Duration {
	var m time.Duration
	for _, d := range c.sleeps {
		m = max(m, d)
	}
	return m
}

func (c *fakeClock) total() time.Duration {
	var s time.Duration
	for _, d := range c.sleeps {
		s += d
	}
	return s
}

// debug makes the tests' loggers keep the pacer's notes.
var debug = &slog.HandlerOptions{Level: slog.LevelDebug}

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// frames30 returns n timestamps of 30 fps from start.
func frames30(start time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = start + time.Duration(i)*time.Second/30
	}
	return out
}

func TestPacer(t *testing.T) {
	cat := func(parts ...[]time.Duration) []time.Duration {
		var out []time.Duration
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// Presentation order of an I P B B group, as Matroska carries it.
	var bframes []time.Duration
	for g := range 20 {
		base := time.Duration(g) * 4 * time.Second / 30
		bframes = append(bframes, base, base+3*time.Second/30, base+time.Second/30, base+2*time.Second/30)
	}
	// Video at 30 fps and AAC at 48 kHz, interleaved by time.
	var av []time.Duration
	v, a := frames30(0, 90), time.Duration(0)
	for _, ts := range v {
		for a < ts {
			av = append(av, a)
			a += 1024 * time.Second / 48000
		}
		av = append(av, ts)
	}
	var oneFPS []time.Duration
	for i := range 10 {
		oneFPS = append(oneFPS, time.Duration(i)*time.Second)
	}
	for _, c := range []struct {
		name    string
		ts      []time.Duration
		events  []string      // the log's discontinuities, in order
		total   time.Duration // time slept
		longest time.Duration // longest sleep, at most
	}{
		{"steady 30 fps", frames30(0, 90), nil, ms(2966.67), ms(33.4)},
		{"B-frames in presentation order", bframes, nil, ms(2633.34), ms(100.1)},
		{"audio and video interleaved", av, nil, ms(2966.67), ms(33.4)},
		{"one frame a second", oneFPS, nil, 9 * time.Second, time.Second},
		{"a second clip after the first (cat a.ts b.ts)", cat(frames30(1400*time.Millisecond, 60), frames30(1400*time.Millisecond, 60)),
			[]string{"jump back", "jump=1.966666666s"}, ms(3966.67), ms(33.4)},
		{"a clip 600 s later", cat(frames30(0, 60), frames30(600*time.Second+2*time.Second, 60)),
			[]string{"jump forward", "jump=10m0.033333334s"}, ms(3966.67), ms(33.4)},
		// The producer keeps a gap under a second in the stream: it is sent
		// in real time, gap and all.
		{"a gap of 10 frames", cat(frames30(0, 30), frames30(40*time.Second/30, 30)), nil, ms(2300), ms(366.7)},
		{"a gap of 1.5 s", cat(frames30(0, 30), frames30(2500*time.Millisecond, 30)), []string{"jump forward", "jump=1.533333334s"}, ms(1966.67), ms(33.4)},
		{"a dropped frame is no jump", cat(frames30(0, 30), frames30(31*time.Second/30, 30)), nil, ms(2000), ms(66.7)},
		{"33-bit wrap seen through a broken decoder", cat(frames30(95443*time.Second, 30), frames30(0, 30)), []string{"jump back"}, ms(1966.67), ms(33.4)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs syncBuffer
			clock := newFakeClock()
			p := &pacer{enabled: true, now: clock.now, sleep: clock.sleep, log: slog.New(slog.NewTextHandler(&logs, debug))}
			for _, ts := range c.ts {
				if err := p.wait(context.Background(), ts); err != nil {
					t.Fatal(err)
				}
			}
			if d := clock.total() - c.total; d.Abs() > ms(1) || clock.longest() > c.longest {
				t.Fatalf("slept %v in all (want %v), at most %v at once (want ≤ %v)", clock.total(), c.total, clock.longest(), c.longest)
			}
			l := logs.String()
			if n := strings.Count(l, "jump"); c.events == nil && n != 0 || c.events != nil && strings.Count(l, "level=DEBUG") != 1 {
				t.Fatalf("discontinuities logged:\n%s", l)
			}
			for _, e := range c.events {
				if !strings.Contains(l, e) {
					t.Fatalf("the log does not say %q:\n%s", e, l)
				}
			}
		})
	}
}

// TestPacerOffStillReports: a source that is not paced (a pipe) still
// reports its discontinuities, and never sleeps.
func TestPacerOffStillReports(t *testing.T) {
	var logs syncBuffer
	clock := newFakeClock()
	p := &pacer{now: clock.now, sleep: clock.sleep, log: slog.New(slog.NewTextHandler(&logs, debug))}
	for _, ts := range append(frames30(0, 30), frames30(600*time.Second, 30)...) {
		if err := p.wait(context.Background(), ts); err != nil {
			t.Fatal(err)
		}
	}
	if len(clock.sleeps) != 0 || !strings.Contains(logs.String(), "jump forward") {
		t.Fatalf("slept %v; log:\n%s", clock.sleeps, logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx, time.Hour); err == nil {
		t.Fatal("wait after the context ended")
	}
}

// TestPacerLogIsBounded: a source whose every timestamp jumps does not
// flood the log.
func TestPacerLogIsBounded(t *testing.T) {
	var logs syncBuffer
	clock := newFakeClock()
	p := &pacer{enabled: true, now: clock.now, sleep: clock.sleep, log: slog.New(slog.NewTextHandler(&logs, debug))}
	for i := range 1000 {
		ts := time.Duration(i%2) * time.Hour
		if err := p.wait(context.Background(), ts); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n > 20 || clock.longest() > startDiscontinuity {
		t.Fatalf("%d log lines for 999 jumps; longest sleep %v", n, clock.longest())
	}
}

// TestPacerClockGoesBack: a clock stepped back (a wall clock without
// time.Now's monotonic reading) does not make the pacer wait for it.
func TestPacerClockGoesBack(t *testing.T) {
	clock := newFakeClock()
	p := &pacer{enabled: true, now: clock.now, sleep: clock.sleep}
	for i, ts := range frames30(0, 60) {
		if i == 30 {
			clock.t = clock.t.Add(-time.Hour)
		}
		if err := p.wait(context.Background(), ts); err != nil {
			t.Fatal(err)
		}
	}
	if clock.longest() > ms(33.4) {
		t.Fatalf("slept %v at once", clock.longest())
	}
}
