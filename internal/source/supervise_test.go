package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// quick makes restarts fast for tests.
func quick(p *Process, logs *syncBuffer) *Process {
	p.Backoff = backoff{First: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	p.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return p
}

func runProcess(t *testing.T, p *Process, sink Sink) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := p.Run(ctx, sink)
	if ctx.Err() != nil {
		t.Fatalf("the source did not end on its own: %v", err)
	}
	return err
}

// TestExecFailingIsRestartedThenGivenUp: a command that fails after
// producing video is restarted with back-off, its error lines are logged
// at ERROR, and after failing MaxFailures times in a row the source ends
// with an error naming the cause.
func TestExecFailingIsRestartedThenGivenUp(t *testing.T) {
	var logs syncBuffer
	clip := mediatest.Fixture(t, "h264-baseline.h264")
	p := quick(Exec(fmt.Sprintf("cat %s; echo 'Conversion failed!' >&2; exit 1", clip), Options{}), &logs)
	p.MaxFailures = 3
	var got collect
	err := runProcess(t, p, &got)
	if err == nil || !strings.Contains(err.Error(), "failed 3 times in a row") || !strings.Contains(err.Error(), "Conversion failed!") {
		t.Fatalf("error %v", err)
	}
	l := logs.String()
	if n := strings.Count(l, "level=ERROR msg=\"the program failed; restarting it\""); n != 2 {
		t.Fatalf("%d restarts logged, want 2:\n%s", n, l)
	}
	if strings.Count(l, `level=ERROR msg="Conversion failed!"`) != 3 {
		t.Fatalf("the program's error line is not logged at ERROR each time:\n%s", l)
	}
	if got.count(1) != 3*90 || got.starts != 1 {
		t.Fatalf("%d frames from 3 runs of a 90-frame clip, %d starts", got.count(1), got.starts)
	}
	for i := 1; i < len(got.frames); i++ {
		if got.frames[i].DTS <= got.frames[i-1].DTS {
			t.Fatalf("frame %d at %v after %v: timestamps must go on across restarts", i, got.frames[i].DTS, got.frames[i-1].DTS)
		}
	}
}

// TestExecEndsCleanly: a command that ends with status 0 ends the stream,
// with no restart and no error.
func TestExecEndsCleanly(t *testing.T) {
	var logs syncBuffer
	p := quick(Exec("cat "+mediatest.Fixture(t, "h264-baseline.h264"), Options{}), &logs)
	var got collect
	if err := runProcess(t, p, &got); err != nil {
		t.Fatal(err)
	}
	if got.count(1) != 90 || strings.Contains(logs.String(), "restarting") {
		t.Fatalf("%d frames; log:\n%s", got.count(1), logs.String())
	}
}

// TestExecFailingBeforeVideoGivesUpAtOnce: a command that fails before
// any video is a mistake in the command: no restarts.
func TestExecFailingBeforeVideoGivesUpAtOnce(t *testing.T) {
	var logs syncBuffer
	p := quick(Exec("no-such-program-kvsgo --flag", Options{}), &logs)
	err := runProcess(t, p, &collect{})
	if err == nil || !strings.Contains(err.Error(), "produced no video") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("error %v", err)
	}
	if l := logs.String(); strings.Contains(l, "restarting") || !strings.Contains(l, "level=ERROR") {
		t.Fatalf("log:\n%s", l)
	}
}

// TestRestartWithOtherParameterSets: a program that comes back with another
// picture size announces its tracks again, with the new parameter sets.
func TestRestartWithOtherParameterSets(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := fmt.Sprintf(`n=$(cat %[1]s 2>/dev/null || echo 0); echo $((n+1)) > %[1]s
if [ "$n" = 0 ]; then cat %[2]s; exit 1; else cat %[3]s; fi`, count, mediatest.Fixture(t, "h264-baseline.h264"), filepath.Join("..", "..", "internal", "source", "testsrc.h264"))
	p := quick(Exec(script, Options{}), &logs)
	var got collect
	if err := runProcess(t, p, &got); err != nil {
		t.Fatal(err)
	}
	if got.starts != 2 || got.tracks[0].Width != 320 || got.count(1) != 90+60 {
		t.Fatalf("%d starts, last track %+v, %d frames", got.starts, got.tracks[0], got.count(1))
	}
}

// failingSink fails after n frames.
type failingSink struct {
	collect
	n int
}

func (f *failingSink) Frame(fr media.Frame) error {
	if len(f.frames) == f.n {
		return errors.New("the stream is refused")
	}
	return f.collect.Frame(fr)
}

// TestSinkErrorEndsWithoutRestart: when the stream itself fails, the
// program is stopped and not restarted, camera or not.
func TestSinkErrorEndsWithoutRestart(t *testing.T) {
	var logs syncBuffer
	p := quick(Exec("cat "+mediatest.Fixture(t, "h264-baseline.h264")+"; sleep 300", Options{}), &logs)
	p.Restart = true
	err := runProcess(t, p, &failingSink{n: 10})
	if err == nil || !strings.Contains(err.Error(), "the stream is refused") || strings.Contains(logs.String(), "restarting") {
		t.Fatalf("error %v; log:\n%s", err, logs.String())
	}
}

func TestProgramLogLevels(t *testing.T) {
	for _, c := range []struct {
		line string
		want slog.Level
	}{
		{"ERROR: from element /GstPipeline:pipeline0/GstIdentity:identity0: Failed after iterations as requested.", slog.LevelError},
		{"ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:v4l2src0: Device '/dev/video0' is busy", slog.LevelError},
		{"WARNING: from element /GstPipeline:pipeline0/GstX264Enc:x264enc0: Could not …", slog.LevelWarn},
		{"0:00:00.123456789 12345 0x55d4c0 ERROR                v4l2src gstv4l2src.c:1234:gst_v4l2src_create: lost frames", slog.LevelError},
		{"0:00:00.123456789 12345 0x55d4c0 WARN                 basesrc gstbasesrc.c:3132: warning", slog.LevelWarn},
		{"Setting pipeline to PLAYING ...", slog.LevelInfo},
		{"/dev/video9: No such file or directory", slog.LevelError},
		{"Conversion failed!", slog.LevelError},
		{"[h264 @ 0x55] error while decoding MB 3 4", slog.LevelError},
		{"[fatal] Unknown encoder 'libx999'", slog.LevelError},
		{"[aac @ 0x55] [warning] Queue input is backward in time", slog.LevelWarn},
		{"[libx264 @ 0x55] frame I:1     Avg QP:19.99  size:  3572", slog.LevelInfo},
		{"frame=   30 fps=0.0 q=-1.0 Lsize=       7kB time=00:00:00.93 bitrate=  64.4kbits/s speed=2.82x", slog.LevelInfo},
		{"sh: 1: rpicam-vid: not found", slog.LevelError},
		{"Preview window unavailable", slog.LevelInfo},
	} {
		if got := programLevel(c.line); got != c.want {
			t.Errorf("%q: %v, want %v", c.line, got, c.want)
		}
	}
	var logs syncBuffer
	l := &programLog{log: slog.New(slog.NewTextHandler(&logs, nil)), program: "gst-launch-1.0"}
	_, _ = l.Write([]byte("ERROR: from element /GstPipeline:pipeline0/GstIdentity:identity0: Failed after iterations as requested.\nAdditional debug info:\n../plugins/elements/gstidentity.c(847): gst_identity_transform_ip (): /GstPipeline:pipeline0/GstIdentity:identity0\nERROR: pipeline doesn't want to preroll.\nFreeing pipeline ..."))
	l.flush()
	if got := strings.Count(logs.String(), "level=ERROR"); got != 4 || !strings.Contains(logs.String(), `level=INFO msg="Freeing pipeline ..."`) ||
		!strings.HasPrefix(l.firstError(), "ERROR: from element /GstPipeline:pipeline0/GstIdentity") {
		t.Fatalf("%d error lines; first %q:\n%s", got, l.firstError(), logs.String())
	}
}
