package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// packet is one packet as ffprobe reads it.
type packet struct {
	video bool
	key   bool
	shown bool // not hidden by an edit list (ffmpeg's discard flag)
	pts   time.Duration
	md5   string
}

func probePackets(t *testing.T, path string) []packet {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-show_entries", "packet=codec_type,stream_index,pts_time,flags,data_hash",
		"-show_data_hash", "MD5", "-of", "json", path)
	var res struct {
		Packets []struct {
			Stream int    `json:"stream_index"`
			PTS    string `json:"pts_time"`
			Flags  string `json:"flags"`
			Hash   string `json:"data_hash"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	streams := mediatest.Probe(t, path, nil, "")
	var pkts []packet
	for _, p := range res.Packets {
		f, err := strconv.ParseFloat(p.PTS, 64)
		if err != nil {
			t.Fatalf("pts %q", p.PTS)
		}
		pkts = append(pkts, packet{video: streams[p.Stream].CodecType == "video", key: strings.Contains(p.Flags, "K"),
			shown: !strings.Contains(p.Flags, "D"), pts: time.Duration(f * float64(time.Second)), md5: p.Hash})
	}
	return pkts
}

// shownAudioMD5 returns the MD5 of each audio packet a player plays.
func shownAudioMD5(t *testing.T, path string) []string {
	t.Helper()
	var sums []string
	for _, p := range probePackets(t, path) {
		if !p.video && p.shown {
			sums = append(sums, strings.TrimPrefix(p.md5, "MD5:"))
		}
	}
	return sums
}

// firstShownKey is the presentation time of the first video key frame a
// player shows, and how many video frames it shows before it.
func firstShownKey(pkts []packet) (time.Duration, int) {
	var key time.Duration = -1
	for _, p := range pkts {
		if p.video && p.shown && p.key {
			key = p.pts
			break
		}
	}
	before := 0
	for _, p := range pkts {
		if p.video && p.shown && p.pts < key {
			before++
		}
	}
	return key, before
}

// TestPutCutMP4AsPlayersShow: an MP4 cut without re-encoding (ffmpeg -ss
// 1.5 -c copy: an edit list hides the pre-roll from the key frame before
// the cut), with and without B-frames, comes back from get-media as ffmpeg
// shows it: not the hidden pre-roll; every video frame from the first key
// frame shown on, decoding to the same pictures (the few shown before that
// key frame need the hidden ones: they are reported as not sent, counted,
// and make put exit 1 saying what to do); every audio packet ffmpeg plays,
// from the cut on, byte for byte, within 1 ms of where ffmpeg places it
// relative to the first video frame (the first fragment starts with the
// audio before that key frame).
func TestPutCutMP4AsPlayersShow(t *testing.T) {
	srv := startServe(t, serveArgs(t.TempDir())...)
	for _, fixture := range []string{"cut-h264-aac.mp4", "cut-bframes-aac.mp4"} {
		t.Run(fixture, func(t *testing.T) {
			t.Parallel()
			src := mediatest.Fixture(t, fixture)
			stream := strings.TrimSuffix(fixture, ".mp4")
			out, errOut, code := kvsgoCmd(t, nil, "put", "--stream", stream, "--source", src, "--endpoint", srv.url, "--fast", "--quiet")
			srcPkts := probePackets(t, src)
			key, lost := firstShownKey(srcPkts)
			sum := parseSummary(t, out)
			if code != 1 || !strings.Contains(out, " 0 errors") || sum.lost != lost || sum.persisted != sum.fragments ||
				!strings.Contains(out, fmt.Sprintf("frames lost: %d needing frames the input does not give", lost)) ||
				!strings.Contains(errOut, "cut MP4s at a key frame, or re-encode them") {
				t.Fatalf("kvsgo put: exit %d, want 1 for the %d frames it could not send\n%s\n%s", code, lost, out, errOut)
			}
			if lost == 0 || !strings.Contains(errOut, "frames=5") || !strings.Contains(errOut, "shown between the MP4 edit's start and the next key frame") {
				t.Fatalf("the frames shown before the first key frame (%d) are not reported:\n%s", lost, errOut)
			}
			got := filepath.Join(t.TempDir(), "got.mkv")
			awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", stream, "--start-selector", "StartSelectorType=EARLIEST", got)

			want := mediatest.FrameMD5(t, src, nil, "", "v:0")
			back := mediatest.FrameMD5(t, got, nil, "", "v:0")
			if len(want) != 45 || !slices.Equal(back, want[lost:]) {
				t.Fatalf("get-media decodes to %d frames; ffmpeg shows %d, %d of them from the first key frame on (or they differ)", len(back), len(want), len(want)-lost)
			}

			var wantA, backA []packet
			for _, p := range srcPkts {
				if !p.video && p.shown {
					p.pts -= key
					wantA = append(wantA, p)
				}
			}
			gotPkts := probePackets(t, got)
			var first time.Duration = -1
			for _, p := range gotPkts {
				if p.video && first < 0 {
					first = p.pts
				}
			}
			for _, p := range gotPkts {
				if !p.video {
					p.pts -= first
					backA = append(backA, p)
				}
			}
			if len(backA) != len(wantA) || len(wantA) < 50 {
				t.Fatalf("%d audio packets back; ffmpeg plays %d", len(backA), len(wantA))
			}
			for i := range wantA {
				if backA[i].md5 != wantA[i].md5 || (backA[i].pts-wantA[i].pts).Abs() > time.Millisecond {
					t.Fatalf("audio packet %d at %v after the first video frame, ffmpeg places it at %v (or its bytes differ)", i, backA[i].pts, wantA[i].pts)
				}
			}
		})
	}
}

// TestPutSupervisedProgramFailing: a gst: pipeline whose identity element
// fails after 30 buffers, and an exec: command that exits 1 after its
// video, are restarted with back-off (each restart in the log, the
// program's error line at ERROR) and, failing every time, given up after
// five runs: kvsgo put exits non-zero, saying why, after delivering what
// they produced.
func TestPutSupervisedProgramFailing(t *testing.T) {
	srv := startServe(t, serveArgs(t.TempDir())...)
	for _, c := range []struct {
		name, source, errorLine string
	}{
		{"gst", "gst:videotestsrc num-buffers=300 ! video/x-raw,width=320,height=240,framerate=30/1 ! identity error-after=30 ! x264enc threads=1 key-int-max=15 bframes=0 tune=zerolatency",
			`level=ERROR msg="ERROR: from element /GstPipeline:pipeline0/GstIdentity:identity0: Failed after iterations as requested."`},
		{"exec", "exec:ffmpeg -v error -f lavfi -i testsrc=size=320x240:rate=30 -t 1 -c:v libx264 -threads 1 -g 15 -bf 0 -f h264 - && echo 'Conversion failed!' >&2 && exit 1",
			`level=ERROR msg="Conversion failed!"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := kvsgoCmd(t, nil, "put", "--stream", "fail-"+c.name, "--source", c.source, "--endpoint", srv.url, "--quiet")
			if code == 0 || !strings.Contains(errOut, "failed 5 times in a row") {
				t.Fatalf("kvsgo put: exit %d, want an error saying it gave up\n%s\n%s", code, out, errOut)
			}
			if n := strings.Count(errOut, `level=ERROR msg="the program failed; restarting it"`); n != 4 {
				t.Fatalf("%d restarts logged, want 4:\n%s", n, errOut)
			}
			if n := strings.Count(errOut, c.errorLine); n != 5 {
				t.Fatalf("the program's error line is logged at ERROR %d times, want 5:\n%s", n, errOut)
			}
			m := regexp.MustCompile(`(\d+) frames, (\d+) fragments, (\d+) persisted, 0 errors`).FindStringSubmatch(out)
			if m == nil || m[2] != m[3] {
				t.Fatalf("what the runs produced was not all delivered: %s", out)
			}
			if n, _ := strconv.Atoi(m[1]); n < 5*25 {
				t.Fatalf("%s frames from five runs", m[1])
			}
		})
	}
}

// stallClip is clip-a.ts without its sound: the frames of a pipe that
// stalls are what the test counts, not the producer's handling of audio.
func stallClip(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "video.ts")
	mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-i", mediatest.Fixture(t, "clip-a.ts"), "-an", "-c", "copy", "-f", "mpegts", path)
	return path
}

// startStalledPut runs kvsgo put on a pipe that carries a clip and then
// stays open and quiet, and waits until put has every frame the pipe
// delivered (all but the last, which waits for a next packet that never
// comes).
func startStalledPut(t *testing.T, srvURL, stream, clip string) (cmd *exec.Cmd, stderr *lockedBuilder, done chan error, frames int) {
	t.Helper()
	for _, s := range mediatest.Probe(t, clip, nil, "") {
		n, _ := strconv.Atoi(s.NbReadFrames)
		frames += n - 1
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close() })
	cmd = exec.Command(binary, "put", "--quiet", "--stream", stream, "--source", "-", "--endpoint", srvURL, "--metrics-addr", metrics)
	cmd.Env = awsEnv()
	var o bytes.Buffer
	stderr = &lockedBuilder{b: &strings.Builder{}}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, &o, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`kvsgo_put_frames (\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := re.FindSubmatch(body); m != nil {
				if n, _ := strconv.Atoi(string(m[1])); n == frames {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvsgo put never had the %d frames the pipe delivered:\n%s", frames, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, stderr, done, frames
}

// TestPutStopsWhileStdinStalls: with a pipe that went quiet without
// closing, SIGTERM (systemctl stop, docker stop) and SIGINT (Ctrl-C) stop
// kvsgo put promptly, and what it had is persisted: get-media gives back
// every video frame the pipe delivered.
func TestPutStopsWhileStdinStalls(t *testing.T) {
	srv := startServe(t, serveArgs(t.TempDir())...)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			stream := "stall-" + strings.ReplaceAll(sig.String(), " ", "")
			clip := stallClip(t)
			cmd, stderr, done, _ := startStalledPut(t, srv.url, stream, clip)
			out := cmd.Stdout.(*bytes.Buffer)
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				done <- err // for the cleanup
				if err != nil {
					t.Fatalf("exit: %v\n%s", err, stderr.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("kvsgo put did not stop within 15 s of %v on a stalled pipe:\n%s", sig, stderr.String())
			}
			t.Logf("stopped %v after %v", sig, time.Since(sent).Round(time.Millisecond))
			m := regexp.MustCompile(`(\d+) fragments, (\d+) persisted, 0 errors`).FindStringSubmatch(out.String())
			if m == nil || m[1] != m[2] || !strings.Contains(stderr.String(), "delivering what is buffered") {
				t.Fatalf("not everything buffered was persisted: %s\n%s", out.String(), stderr.String())
			}
			got := filepath.Join(t.TempDir(), "got.mkv")
			if err := os.WriteFile(got, getMedia(t, srv.url, stream), 0o644); err != nil {
				t.Fatal(err)
			}
			want := mediatest.FrameMD5(t, clip, nil, "", "v:0")
			back := mediatest.FrameMD5(t, got, nil, "", "v:0")
			if len(want) != 60 || !slices.Equal(back, want[:59]) {
				t.Fatalf("get-media decodes to %d frames; the pipe delivered 59 of the clip's %d (or they differ)", len(back), len(want))
			}
		})
	}
}

// TestPutSecondSignalQuits: while kvsgo put waits for the service to
// persist what it holds (here a server that stopped answering), a second
// signal quits at once, with 128 + the signal's number.
func TestPutSecondSignalQuits(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	cmd, stderr, done, _ := startStalledPut(t, srv.url, "second-signal", stallClip(t))
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.cmd.Process.Signal(syscall.SIGCONT) })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "delivering what is buffered") {
		if time.Now().After(deadline) {
			t.Fatalf("the first SIGTERM was not taken:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("kvsgo put ended before the second signal (%v): the test needs it waiting\n%s", err, stderr.String())
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) || !strings.Contains(stderr.String(), "quitting at once") {
			t.Fatalf("after the second SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the second SIGTERM did not quit:\n%s", stderr.String())
	}
}

// TestPutProgramRestartedWithOtherPictureSize: an exec: program that fails
// and comes back at another picture size (640x480, then 320x240) goes on
// in the same stream: the producer takes the new tracks (a new header with
// the new codec private data) instead of refusing them; every frame of both
// runs comes back, each fragment at its run's size, and the run ends 0
// (the second run ends cleanly, nothing lost).
func TestPutProgramRestartedWithOtherPictureSize(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	first := mediatest.Fixture(t, "h264-baseline.h264")
	second, err := filepath.Abs(filepath.Join(mediatest.Root(t), "internal", "source", "testsrc.h264"))
	if err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(t.TempDir(), "runs")
	script := fmt.Sprintf(`exec:n=$(cat %[1]s 2>/dev/null || echo 0); echo $((n+1)) > %[1]s; `+
		`if [ "$n" = 0 ]; then cat %[2]s; echo 'the camera went away' >&2; exit 1; else cat %[3]s; fi`, runs, first, second)
	out, errOut, code := kvsgoCmd(t, nil, "put", "--stream", "resized", "--source", script, "--endpoint", srv.url, "--quiet")
	sum := parseSummary(t, out)
	if code != 0 || sum.lost != 0 || sum.frames != 90+60 || sum.persisted != sum.fragments ||
		!strings.Contains(errOut, "restarted with other tracks or parameter sets") || !strings.Contains(errOut, "new stream header") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	got := filepath.Join(t.TempDir(), "got.mkv")
	awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", "resized", "--start-selector", "StartSelectorType=EARLIEST", got)
	var back []string
	widths := map[int]int{}
	for _, frag := range fragments(t, got) {
		back = append(back, mediatest.FrameMD5(t, frag, nil, "", "v:0")...)
		widths[mediatest.Probe(t, frag, nil, "")[0].Width]++
	}
	want := append(mediatest.FrameMD5(t, first, nil, "h264", "v:0"), mediatest.FrameMD5(t, second, nil, "h264", "v:0")...)
	if len(want) != 150 || !slices.Equal(back, want) {
		t.Fatalf("%d frames back, %d sent by the two runs, or they differ", len(back), len(want))
	}
	if widths[640] != 4 || widths[320] != 2 || len(widths) != 2 {
		t.Fatalf("fragments by width: %v; want 4 of 640 (key frames every 25 of 90) and 2 of 320", widths)
	}
}
