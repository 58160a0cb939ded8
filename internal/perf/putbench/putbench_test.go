package putbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/perf"
	"github.com/kvsgo/kvsgo/internal/perf/perftest"
	"github.com/kvsgo/kvsgo/internal/perf/wiretap"
)

// TestRunRealPut runs the real kvsgo binary on a 3 s clip against kvsgo's
// server, once plain and once under strace.
func TestRunRealPut(t *testing.T) {
	dir := t.TempDir()
	bin, err := perf.BuildKvsgo(context.Background(), "../../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := perftest.StartServer(t)
	// h264-baseline.h264: 90 frames at 30 fps, a key frame every 25.
	input := "../../../testdata/h264-baseline.h264"
	res, err := Run(context.Background(), Config{Kvsgo: bin, Server: srv, ServerPID: os.Getpid(), Input: input, Stream: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Frames != 90 || res.Fragments != 4 || res.Persist != 4 || res.Sessions != 1 {
		t.Fatalf("%d frames, %d fragments, %d persisted, %d sessions; want 90, 4, 4, 1", res.Frames, res.Fragments, res.Persist, res.Sessions)
	}
	// Timecodes are whole milliseconds: 33 ms frames.
	if res.Video < 2990*time.Millisecond || res.Video > 3*time.Second {
		t.Fatalf("video %v, want 3s", res.Video)
	}
	// Paced: the run lasts at least the video.
	if res.Wall < res.Video || res.CPU() <= 0 || res.MaxRSS < 1<<20 || res.ServerCPU < 0 {
		t.Fatalf("wall %v, cpu %v, max RSS %d", res.Wall, res.CPU(), res.MaxRSS)
	}
	if res.FirstRequest <= 0 || res.FirstBody < res.FirstRequest || res.FirstBody > res.Wall {
		t.Fatalf("first request after %v, first body byte after %v, exit after %v", res.FirstRequest, res.FirstBody, res.Wall)
	}
	// The first fragment (25 frames) is left out of the delays.
	if res.FrameToWire.N != 65 || res.KeyToServer.N != 3 || res.EndToPersisted.N != 3 || res.LastFrameToPersisted.N != 3 {
		t.Fatalf("samples: %d frames, %d key frames, %d ends, %d last frames", res.FrameToWire.N, res.KeyToServer.N, res.EndToPersisted.N, res.LastFrameToPersisted.N)
	}
	// The last frame of a fragment waits at least for the next key frame
	// (one frame interval) before the server can store it.
	if res.LastFrameToPersisted.P50 < 30*time.Millisecond || res.LastFrameToPersisted.P50 < res.EndToPersisted.P50 {
		t.Fatalf("last frame → PERSISTED %v, fragment end → PERSISTED %v", res.LastFrameToPersisted, res.EndToPersisted)
	}
	if !strings.Contains(res.Output, "4 persisted") {
		t.Fatalf("put said %q", res.Output)
	}
	if res.PerMinute(res.Video) != time.Minute {
		t.Fatal("PerMinute")
	}

	out := filepath.Join(dir, "strace.txt")
	traced, err := Run(context.Background(), Config{Kvsgo: bin, Server: srv, Input: input, Stream: "bench", StraceOut: out})
	if err != nil {
		t.Fatal(err)
	}
	s := traced.Syscalls
	if s == nil || s.Total < 90 || s.Calls["write"]+s.Calls["writev"] == 0 || s.Calls["execve"] == 0 {
		t.Fatalf("system calls: %+v", s)
	}
}

func TestAnalyseRefusesTimecodesThatAreNotTheClock(t *testing.T) {
	start := time.Now()
	s := wiretap.Session{Opened: start, FirstBody: start}
	for i := range 30 {
		// RELATIVE-style timecodes: milliseconds from 0, decades before
		// the frames crossed. Three fragments of ten frames.
		if i%10 == 0 {
			s.Fragments = append(s.Fragments, wiretap.Fragment{Timecode: int64(i * 33)})
		}
		s.Frames = append(s.Frames, wiretap.Frame{Timecode: int64(i * 33), At: start.Add(time.Duration(i) * 33 * time.Millisecond), Fragment: i / 10})
	}
	var r Result
	if err := analyse(&r, start, []wiretap.Request{{At: start}}, []wiretap.Session{s}, false); err != nil {
		t.Fatalf("timecodes from 1970 are before the wire, not after: %v", err)
	}
	if r.FrameToWire.N != 20 || r.Frames != 30 || r.Fragments != 3 {
		t.Fatalf("%d frame delays of %d frames, %d fragments: the first fragment's frames are left out", r.FrameToWire.N, r.Frames, r.Fragments)
	}
	// Timecodes in the future: frames crossing before they were taken.
	for i := range s.Frames {
		s.Frames[i].Timecode = start.Add(time.Hour).UnixMilli() + int64(i*33)
	}
	r = Result{}
	if err := analyse(&r, start, []wiretap.Request{{At: start}}, []wiretap.Session{s}, false); err == nil || !strings.Contains(err.Error(), "not the wall clock") {
		t.Fatalf("frames an hour before their timecodes: %v", err)
	}
	// Under strace the delays are not used: no reason to fail.
	r = Result{}
	if err := analyse(&r, start, []wiretap.Request{{At: start}}, []wiretap.Session{s}, true); err != nil {
		t.Fatalf("a traced run failed on its delays: %v", err)
	}
	if err := analyse(&r, start, nil, nil, false); err == nil {
		t.Fatal("nothing crossed, and no error")
	}
}
