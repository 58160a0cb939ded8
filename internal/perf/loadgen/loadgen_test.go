package loadgen

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/perftest"
	"github.com/kvsgo/kvsgo/internal/perf/wiretap"
)

func TestLoadClip(t *testing.T) {
	c, err := LoadClip("../../../testdata/h264-aac.mkv")
	if err != nil {
		t.Fatal(err)
	}
	// 3 s of 640x480 at 30 fps, a key frame every 25 frames, no audio.
	if len(c.Frames) != 90 || c.Track.Width != 640 || c.Track.CodecID != "V_MPEG4/ISO/AVC" || c.Track.Number != 1 {
		t.Fatalf("%d frames of %dx%d %s track %d", len(c.Frames), c.Track.Width, c.Track.Height, c.Track.CodecID, c.Track.Number)
	}
	if c.Loop != 3*time.Second || c.GOP != 833*time.Millisecond {
		t.Fatalf("loop %v, GOP %v; want 3s and 833ms", c.Loop, c.GOP)
	}
	if fps := c.FPS(); fps != 30 {
		t.Fatalf("%v fps", fps)
	}
	if !c.Frames[0].Key || len(c.Track.CodecPrivate) == 0 {
		t.Fatal("no key frame first, or no codec private data")
	}
	if _, err := LoadClip("../../../testdata/h264-baseline.h264"); err == nil {
		t.Fatal("loaded raw H.264 as Matroska")
	}
}

func clip(t *testing.T) *Clip {
	t.Helper()
	c, err := LoadClip("../../../testdata/h264-aac.mkv")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRunAgainstServer runs three producers for three fragments each
// against kvsgo's server, through a wire tap that checks what they sent.
func TestRunAgainstServer(t *testing.T) {
	srv := perftest.StartServer(t)
	tap, err := wiretap.Listen("127.0.0.1:0", strings.TrimPrefix(srv, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	c := clip(t)
	res, err := Run(context.Background(), Config{
		Endpoint: tap.URL(), ServerPID: os.Getpid(), Streams: 3, Duration: 3 * c.GOP, Clip: c, AckWait: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Missing != 0 {
		t.Fatalf("%d errors %v, %d fragments missing", res.Errors, res.ErrorSamples, res.Missing)
	}
	// Each producer stops at the first key frame at or after its duration:
	// three fragments.
	if res.FragmentsSent != 9 || res.FragmentsPersisted != 9 || res.Latency.N+res.WarmupLatency.N != 9 {
		t.Fatalf("%d fragments sent, %d persisted, %d+%d latencies; want 9", res.FragmentsSent, res.FragmentsPersisted, res.Latency.N, res.WarmupLatency.N)
	}
	// Without a warm-up, only fragments that ended while the producers
	// were still starting count as warm-up: at most the first of each.
	if res.WarmupLatency.N > 3 {
		t.Fatalf("%d fragments counted as warm-up", res.WarmupLatency.N)
	}
	if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("latency %+v", res.Latency)
	}
	if res.Lag.N != 3*75 {
		t.Fatalf("%d frames paced, want 225", res.Lag.N)
	}
	if res.Server == nil || res.Server.PeakRSS <= 0 || res.Window <= 0 {
		t.Fatalf("server %+v over %v", res.Server, res.Window)
	}

	// What crossed the wire: three sessions of three fragments, every
	// frame of the clip in order with the clip's timing and sizes, and
	// fragments staggered across the GOP.
	sessions := tap.Sessions()
	if len(sessions) != 3 {
		t.Fatalf("%d PutMedia sessions, want 3", len(sessions))
	}
	starts := map[int64]bool{}
	for _, s := range sessions {
		if s.ScanErr != "" || len(s.Fragments) != 3 || len(s.Frames) != 75 {
			t.Fatalf("%s: %d fragments, %d frames, scan error %q", s.Stream, len(s.Fragments), len(s.Frames), s.ScanErr)
		}
		for i, f := range s.Frames {
			want := c.Frames[i]
			if f.Key != want.Key || f.Size != len(want.Data) || f.Timecode-s.Frames[0].Timecode != want.PTS.Milliseconds() {
				t.Fatalf("%s frame %d: %+v; the clip has key %v, %d bytes at %v", s.Stream, i, f, want.Key, len(want.Data), want.PTS)
			}
		}
		for _, f := range s.Fragments {
			if f.Persisted.IsZero() {
				t.Fatalf("%s: fragment %d not persisted", s.Stream, f.Timecode)
			}
		}
		starts[s.Frames[0].Timecode%c.GOP.Milliseconds()] = true
		if s.BodyEnded.IsZero() {
			t.Fatalf("%s: body not ended", s.Stream)
		}
	}
	if len(starts) != 3 {
		t.Fatalf("the producers' fragments are not staggered: %v", starts)
	}
}

func TestRunReportsRefusal(t *testing.T) {
	srv := perftest.StartServer(t)
	c := clip(t)
	c.Track.Number = 2 // frames go to track 1: the server answers ERROR 4010
	res, err := Run(context.Background(), Config{Endpoint: srv, Streams: 1, Duration: 3 * c.GOP, Clip: c, AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Missing == 0 || !strings.Contains(strings.Join(res.ErrorSamples, "\n"), "ERROR ack 4010") {
		t.Fatalf("a stream the server refuses: %d errors %q, %d fragments missing", res.Errors, res.ErrorSamples, res.Missing)
	}
	if !Over(res, time.Hour) {
		t.Fatal("a run with errors is not over the bar")
	}
}

func TestVerdict(t *testing.T) {
	ok := func(n int, p99 time.Duration) Result {
		return Result{Streams: n, FragmentsSent: 10, FragmentsPersisted: 10, Latency: perf.Summary{N: 10, P99: p99}}
	}
	lost := ok(600, 50*time.Millisecond)
	lost.Missing, lost.FragmentsPersisted = 3, 7
	for _, c := range []struct {
		rs   []Result
		want string
	}{
		{[]Result{ok(50, 9*time.Millisecond), ok(300, 40*time.Millisecond), ok(800, 1700*time.Millisecond)}, "holds up to 300 streams and is passed at 800: p99 1700 ms"},
		{[]Result{ok(50, 9*time.Millisecond), lost}, "passed at 600: 3 fragments not persisted"},
		{[]Result{ok(50, 9*time.Millisecond), ok(100, 100*time.Millisecond)}, "holds at every step, up to 100 streams"},
		{[]Result{ok(50, 101*time.Millisecond)}, "passed already at 50 streams"},
		{[]Result{ok(50, 180*time.Millisecond), ok(100, 42*time.Millisecond), ok(200, 355*time.Millisecond)}, "held again at 100 streams"},
	} {
		if got := Verdict(c.rs, 100*time.Millisecond); !strings.Contains(got, c.want) {
			t.Errorf("Verdict = %q, want it to say %q", got, c.want)
		}
	}
	if tbl := Table([]Result{ok(300, 40*time.Millisecond)}); !strings.Contains(tbl, "| 300 | 10 / 10 | 0 |") {
		t.Errorf("table row: %s", tbl)
	}
}

func TestRunRefusesServersElsewhere(t *testing.T) {
	_, err := Run(context.Background(), Config{Endpoint: "http://192.0.2.1:4567", Streams: 1, Duration: 10 * time.Second, Clip: clip(t)})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a server off this machine: %v", err)
	}
}
