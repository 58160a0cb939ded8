package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// standIn writes an executable script named name into dir that records its
// arguments in name.args and then runs body.
func standIn(t *testing.T, dir, name, body string) string {
	t.Helper()
	args := filepath.Join(dir, name+".args")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\n%s\n", args, body)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return args
}

// onlyPath makes PATH dir plus a directory holding only sh, cat and sleep,
// so that the programs the test did not place there are missing.
func onlyPath(t *testing.T, dir string) {
	t.Helper()
	tools := t.TempDir()
	for _, name := range []string{"sh", "cat", "sleep"} {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(tools, name)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+tools)
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stopAfter is a sink that cancels the source after n frames.
type stopAfter struct {
	collect
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (s *stopAfter) Frame(f media.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.collect.Frame(f)
	if len(s.frames) == s.n {
		s.cancel()
	}
	return nil
}

func runUntil(t *testing.T, src Source, frames int) *stopAfter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &stopAfter{n: frames, cancel: cancel}
	if err := src.Run(ctx, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.frames) < frames {
		t.Fatalf("%d frames before the deadline, want %d", len(sink.frames), frames)
	}
	return sink
}

func readArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestRPiCamFlagsRestartAndTiming(t *testing.T) {
	dir := t.TempDir()
	args := standIn(t, dir, "rpicam-vid", "echo 'Preview window unavailable' >&2; cat "+mediatest.Fixture(t, "h264-baseline.h264"))
	onlyPath(t, dir)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	src := RPiCam(Camera{Width: 640, Height: 480, FPS: 25, Bitrate: 1_000_000}, Options{Logger: log}, "Raspberry Pi 5 Model B Rev 1.0")
	// The stand-in ends after one clip: the source restarts it.
	got := runUntil(t, src, 120)
	lines := readArgs(t, args)
	want := "-t 0 -n --inline --codec h264 -o - --width 640 --height 480 --framerate 25 --bitrate 1000000 --intra 25 --profile baseline --low-latency"
	if len(lines) < 2 || lines[0] != want {
		t.Fatalf("rpicam-vid ran %d times, with\n%q\nwant\n%q", len(lines), lines, want)
	}
	if l := logs.String(); !strings.Contains(l, "program="+filepath.Join(dir, "rpicam-vid")) || !strings.Contains(l, "Preview window unavailable") || !strings.Contains(l, "restarting") {
		t.Fatalf("rpicam-vid's stderr and its restart are not in the log:\n%s", l)
	}
	if got.tracks[0].Width != 640 || got.tracks[0].CodecID != media.CodecH264 {
		t.Fatalf("track %+v", got.tracks[0])
	}
	for i := 1; i < len(got.frames); i++ {
		if got.frames[i].DTS <= got.frames[i-1].DTS {
			t.Fatalf("frame %d at %v after %v: timestamps must go on across a restart", i, got.frames[i].DTS, got.frames[i-1].DTS)
		}
	}
}

func TestLibcameraFallbackAndMissingProgram(t *testing.T) {
	dir := t.TempDir()
	args := standIn(t, dir, "libcamera-vid", "cat "+mediatest.Fixture(t, "h264-baseline.h264"))
	onlyPath(t, dir)
	runUntil(t, RPiCam(Camera{}, Options{}, "Raspberry Pi 4 Model B"), 10)
	if l := readArgs(t, args); !strings.HasSuffix(l[0], "--intra 30 --profile baseline") || strings.Contains(l[0], "low-latency") {
		t.Fatalf("libcamera-vid args %q", l[0])
	}

	onlyPath(t, t.TempDir())
	err := RPiCam(Camera{}, Options{}, "").Run(context.Background(), &collect{})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "rpicam-vid or libcamera-vid") || !strings.Contains(err.Error(), "sudo apt install rpicam-apps") {
		t.Fatalf("missing program: %v", err)
	}
}

func TestV4L2PassThroughOrEncode(t *testing.T) {
	mkv := mediatest.Fixture(t, "h264-aac.mkv")
	for _, c := range []struct {
		name, formats, want string
	}{
		{"camera with H.264", "[video4linux2,v4l2 @ 0x55] Compressed:        h264 :                H.264 : 1920x1080 1280x720",
			"-hide_banner -loglevel warning -f v4l2 -framerate 30 -video_size 1280x720 -input_format h264 -i /dev/video7 -c:v copy -f matroska -"},
		{"raw camera", "[video4linux2,v4l2 @ 0x55] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480",
			"-hide_banner -loglevel warning -f v4l2 -framerate 30 -video_size 1280x720 -i /dev/video7 -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -bf 0 -pix_fmt yuv420p -b:v 2000000 -f matroska -"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := standIn(t, dir, "ffmpeg", fmt.Sprintf(`case "$*" in *list_formats*) echo '%s' >&2; exit 1;; esac
cat %s`, c.formats, mkv))
			onlyPath(t, dir)
			src, err := V4L2(context.Background(), "/dev/video7", Camera{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			runUntil(t, src, 50)
			lines := readArgs(t, args)
			if len(lines) < 2 || !strings.Contains(lines[0], "-list_formats all -i /dev/video7") || lines[1] != c.want {
				t.Fatalf("ffmpeg ran with\n%q\nwant\n%q", lines, c.want)
			}
		})
	}
	onlyPath(t, t.TempDir())
	if _, err := V4L2(context.Background(), "/dev/video0", Camera{}, Options{}); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "sudo apt install ffmpeg") {
		t.Fatalf("no encoder: %v", err)
	}
}

func TestGStreamerPipelineAsPastedForKVSSink(t *testing.T) {
	p := GStreamer(`libcamerasrc ! video/x-raw,width=1280,height=720,framerate=30/1 ! videoconvert ! x264enc tune=zerolatency key-int-max=30 ! h264parse ! video/x-h264,stream-format=avc,alignment=au,profile=baseline ! kvssink stream-name=cam storage-size=128 aws-region=us-east-1`, Options{})
	want := "libcamerasrc ! video/x-raw,width=1280,height=720,framerate=30/1 ! videoconvert ! x264enc tune=zerolatency key-int-max=30 ! h264parse ! video/x-h264,stream-format=avc,alignment=au,profile=baseline ! h264parse ! matroskamux streamable=true ! fdsink fd=1"
	if got := strings.Join(p.Argv[3:], " "); got != want {
		t.Fatalf("pipeline\n%s\nwant\n%s", got, want)
	}
	if h := GStreamer("videotestsrc ! x265enc ! video/x-h265 !", Options{}); !strings.Contains(strings.Join(h.Argv, " "), "x265enc ! video/x-h265 ! h265parse ! matroskamux") {
		t.Fatalf("H.265 pipeline %q", h.Argv)
	}
	// Quotes group and go, as in a shell.
	q := GStreamer(`v4l2src ! v4l2h264enc extra-controls="controls,repeat_sequence_header=1" ! 'video/x-h264,level=(string)4'`, Options{})
	if !slices.Contains(q.Argv, "extra-controls=controls,repeat_sequence_header=1") || !slices.Contains(q.Argv, "video/x-h264,level=(string)4") {
		t.Fatalf("quoted words: %q", q.Argv)
	}
}

// TestStopLeavesNoProcesses: stopping a source ends the program and
// everything it started; none is left running or unreaped.
func TestStopLeavesNoProcesses(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	src := Exec(fmt.Sprintf("sleep 300 & echo $! > %s; cat %s; sleep 300", pidFile, mediatest.Fixture(t, "h264-baseline.h264")), Options{})
	runUntil(t, src, 30)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(10 * time.Second)
	for {
		state := processState(pid)
		if state == "" || state == "Z" && parentOf(pid) != fmt.Sprint(os.Getpid()) {
			break // gone (or a zombie only init still has to reap)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program's child %s is still there (state %s)", pid, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if z := zombieChildren(); len(z) > 0 {
		t.Fatalf("unreaped children of the test process: %v", z)
	}
}

// processState returns the state letter of a process, "" if it is gone.
func processState(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

func parentOf(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[1]
}

func zombieChildren() []string {
	entries, _ := os.ReadDir("/proc")
	var z []string
	for _, e := range entries {
		if processState(e.Name()) == "Z" && parentOf(e.Name()) == fmt.Sprint(os.Getpid()) {
			z = append(z, e.Name())
		}
	}
	return z
}
