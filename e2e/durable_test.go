package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// bufferFiles lists a stream's buffer directory: whole fragment files
// (.frag) and the one being written (.part), with their sizes.
func bufferFiles(t *testing.T, dir string) (frags, parts map[string]int64) {
	t.Helper()
	frags, parts = map[string]int64{}, map[string]int64{}
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		switch filepath.Ext(e.Name()) {
		case ".frag":
			frags[e.Name()] = info.Size()
		case ".part":
			parts[e.Name()] = info.Size()
		}
	}
	return frags, parts
}

// TestDurablePutKilledWhileServerDown: put records with --buffer-dir while
// the service cannot be reached, and is killed with SIGKILL in the middle
// of a fragment. Then the server comes up and put starts again with the
// same directory and stream and a new source: every frame of the whole
// fragments on disk arrives once, oldest first, then the new video (one
// stream, timestamps in order: no 4004); the torn fragment is reported and
// never sent; the directory is empty at the end.
func TestDurablePutKilledWhileServerDown(t *testing.T) {
	t.Parallel()
	for i, c := range []struct{ name, clock string }{
		{"clock right", ""},
		// A Raspberry Pi without a clock battery that restarts before NTP
		// has set its clock: the new video's wall clock is behind the
		// backlog's. It goes on after it all the same.
		{"clock set back an hour", "-1h"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			killedWhileServerDown(t, i, c.clock)
		})
	}
}

func killedWhileServerDown(t *testing.T, order int, clock string) {
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	streamDir := filepath.Join(dir, "cam")
	one, two := uniqueClip(t, 30, false), uniqueClip(t, 8, true)
	p := startPutProc(t, nil, "--stream", "cam", "--source", one, "--endpoint", "http://"+listen, "--buffer-dir", dir)
	deadline := time.Now().Add(time.Minute)
	for {
		frags, parts := bufferFiles(t, streamDir)
		torn := false
		for _, size := range parts {
			torn = size > 4096 // some frames of the fragment being written are on disk
		}
		if len(frags) >= 8 && torn { // more than the service takes in a second
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fragments on disk: %v %v\n%s", frags, parts, p.errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill9()
	frags, parts := bufferFiles(t, streamDir)
	if len(parts) != 1 {
		t.Fatalf("after the kill: %v whole, %v being written", frags, parts)
	}
	whole := len(frags)

	srv := startServeAt(t, listen, serveArgs(t.TempDir())...)
	up := time.Now()
	args := []string{"--stream", "cam", "--source", two, "--endpoint", srv.url, "--buffer-dir", dir}
	if clock != "" {
		args = append(args, "--clock-offset", clock)
	}
	p2 := startPutProc(t, nil, args...)
	p2.waitMetric(t, "kvsgo_put_fragments_persisted", time.Minute, atLeast(1))
	recovery := time.Since(up)
	out, errOut, code := p2.wait(t)
	if code != 0 || !strings.Contains(out, " 0 errors") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if clock != "" && !strings.Contains(errOut, "is behind the video buffered on disk") {
		t.Fatalf("the clock behind the backlog was not reported:\n%s", errOut)
	}
	// A fragment is a second: 30 frames.
	want := append(mediatest.FrameMD5(t, one, nil, "h264", "v:0")[:30*whole], mediatest.FrameMD5(t, two, nil, "h264", "v:0")...)
	back := framesBack(t, srv.url, "cam")
	lost, extra := compareFrames(back, want)
	if lost != 0 || extra != 0 {
		t.Fatalf("%d frames back; want the %d whole fragments' %d then the new %d: %d lost, %d extra\n%s\n%s",
			len(back), whole, 30*whole, len(want)-30*whole, lost, extra, out, errOut)
	}
	if !strings.Contains(errOut, "skipped a torn fragment file") || !strings.Contains(errOut, "stopped while writing it") ||
		!strings.Contains(errOut, fmt.Sprintf("%d fragments (%d frames", whole, 30*whole)) ||
		!strings.Contains(out, fmt.Sprintf("%d fragments (%d frames) buffered on disk by an earlier run, sent first", whole, 30*whole)) {
		t.Fatalf("the recovery was not reported:\n%s\n%s", out, errOut)
	}
	if frags, parts := bufferFiles(t, streamDir); len(frags)+len(parts) != 0 {
		t.Fatalf("files left after everything was persisted: %v %v", frags, parts)
	}
	if busiest := busiestSecond(t, srv.url, "cam"); busiest > 5 {
		t.Fatalf("%d fragments within a second: the service takes 5", busiest)
	}
	fault := "put with `--buffer-dir` killed (SIGKILL) mid-fragment while the server is down; then both back, put with a new source"
	happened := fmt.Sprintf("the %d whole fragments on disk were sent first, oldest first, then the new video, on one stream in timestamp order (no 4004); the torn fragment was reported and not sent; the directory was empty at the end", whole)
	if clock != "" {
		fault += ", its clock set back an hour (a Pi without a clock battery, before NTP)"
		happened += "; the clock behind the backlog was reported and the new video placed after the backlog"
	}
	recordReliability(reliabilityRow{order: 70 + order, fault: fault, happened: happened,
		lost: fmt.Sprintf("0 of what was buffered (the torn fragment's frames, after the last whole one: %s, reported)", tornFrames(errOut)),
		dups: extra, recovery: durations([]time.Duration{recovery}) + " from the server's start to a fragment persisted"})
}

func tornFrames(log string) string {
	i := strings.Index(log, "skipped a torn fragment file")
	if i < 0 {
		return "?"
	}
	line := log[i:]
	line = line[:strings.IndexByte(line+"\n", '\n')]
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "frames=") {
			return strings.TrimPrefix(f, "frames=")
		}
	}
	return "?"
}

// TestDurableFilesStayUntilPersisted: while the service acknowledges
// fragments RECEIVED but never PERSISTED, every fragment stays on disk: a
// kill -9 then leaves them all for the next run (which sends them again;
// the server keeps one copy of a fragment sent twice).
func TestDurableFilesStayUntilPersisted(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	proxy := newFaultProxy(t, srv.url)
	proxy.setRewrite(func(line []byte) []byte {
		if strings.Contains(string(line), `"PERSISTED"`) {
			return nil
		}
		return line
	})
	dir := t.TempDir()
	src := uniqueClip(t, 30, false)
	p := startPutProc(t, nil, "--stream", "cam", "--source", src, "--endpoint", proxy.url, "--buffer-dir", dir, "--ack-timeout", "1h")
	received := p.waitMetric(t, "kvsgo_put_fragments_received", time.Minute, atLeast(4))
	p.kill9()
	frags, _ := bufferFiles(t, filepath.Join(dir, "cam"))
	if float64(len(frags)) < received {
		t.Fatalf("%d fragments RECEIVED (none PERSISTED), %d left on disk", int(received), len(frags))
	}
	proxy.setRewrite(nil)
	out, errOut, code := startPutProc(t, nil, "--stream", "cam", "--source", uniqueClip(t, 8, true), "--endpoint", proxy.url, "--buffer-dir", dir).wait(t)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d fragments", len(frags))) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	back := framesBack(t, srv.url, "cam")
	want := append(mediatest.FrameMD5(t, src, nil, "h264", "v:0")[:30*len(frags)], mediatest.FrameMD5(t, uniqueClip(t, 8, true), nil, "h264", "v:0")...)
	if lost, extra := compareFrames(back, want); lost != 0 || extra != 0 {
		t.Fatalf("%d lost, %d extra", lost, extra)
	}
}

// TestDurableLock: two puts cannot send one stream from one buffer
// directory; the second says who holds it. Another stream may share the
// directory, and the lock goes with the process, even killed.
func TestDurableLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) // nobody there: they buffer
	a := startPutProc(t, nil, "--stream", "cam", "--source", "testsrc", "--endpoint", endpoint, "--buffer-dir", dir)
	a.waitMetric(t, "kvsgo_put_fragments", time.Minute, atLeast(3)) // two whole ones on disk
	out, errOut, code := startPutProc(t, nil, "--stream", "cam", "--source", "testsrc", "--endpoint", endpoint, "--buffer-dir", dir).wait(t)
	if code != 1 || !strings.Contains(errOut, `another kvsgo put is sending stream "cam" from `+dir) ||
		!strings.Contains(errOut, fmt.Sprintf("process %d", a.cmd.Process.Pid)) {
		t.Fatalf("second put on the same stream and directory: exit %d\n%s\n%s", code, out, errOut)
	}
	other := startPutProc(t, nil, "--stream", "porch", "--source", "testsrc", "--endpoint", endpoint, "--buffer-dir", dir)
	other.waitMetric(t, "kvsgo_put_frames", time.Minute, atLeast(1))
	a.kill9()
	again := startPutProc(t, nil, "--stream", "cam", "--source", "testsrc", "--endpoint", endpoint, "--buffer-dir", dir)
	again.waitMetric(t, "kvsgo_put_fragments_recovered", time.Minute, atLeast(1))
}

// TestDurableMemoryBoundedDuringOutage: with --buffer-dir, an outage of
// any length costs disk (up to --buffer-size, the oldest evicted and
// reported), not memory. Hours of video are made in seconds (the built-in
// clip, --fast) while the service cannot be reached; put's resident memory
// stops growing once the disk buffer is full, and stays well below it.
func TestDurableMemoryBoundedDuringOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	const sizeMB = 32
	p := startPutProc(t, nil, "--stream", "cam", "--source", "testsrc", "--fast", "--endpoint", endpoint,
		"--buffer-dir", dir, "--buffer-size", fmt.Sprint(sizeMB))
	p.waitMetric(t, "kvsgo_put_fragments_dropped", time.Minute, atLeast(1)) // the disk buffer is full
	full := p.metric("kvsgo_put_frames")
	// Resident memory, once a second, for at least 30 s and until put has
	// made three times what filled the buffer (a loaded machine makes it
	// slower).
	var rss []int64
	deadline := time.Now().Add(5 * time.Minute)
	for len(rss) < 30 || p.metric("kvsgo_put_frames") < 3*full {
		if time.Now().After(deadline) {
			t.Fatalf("put made %d frames in 5 min after the buffer was full at %d", int(p.metric("kvsgo_put_frames")), int(full))
		}
		time.Sleep(time.Second)
		rss = append(rss, rssOf(t, p.cmd.Process.Pid))
	}
	m := p.scrape()
	frames, dropped := m["kvsgo_put_frames"], m["kvsgo_put_fragments_dropped"]
	h := p.health(t)
	frags, _ := bufferFiles(t, filepath.Join(dir, "cam"))
	var onDisk int64
	for _, s := range frags {
		onDisk += s
	}
	p.kill9()
	firstHalf, secondHalf := maxOf(rss[:len(rss)/2]), maxOf(rss[len(rss)/2:])
	if frames < 3*full || secondHalf > firstHalf+8<<20 || secondHalf > 100<<20 || onDisk > (sizeMB+1)<<20 {
		t.Fatalf("after %d frames (the buffer was full at %d): resident %.1f MB then %.1f MB; %.1f MB on disk",
			int(frames), int(full), float64(firstHalf)/1e6, float64(secondHalf)/1e6, float64(onDisk)/1e6)
	}
	if !strings.Contains(p.errOut.String(), "dropped the oldest fragment") {
		t.Fatal("evictions not reported")
	}
	hours := frames / 30 / 3600
	recordReliability(reliabilityRow{order: 80, fault: fmt.Sprintf("an outage while the camera records: %.1f hours of video (the built-in clip, sent as fast as made) with `--buffer-dir --buffer-size %d` and nothing to send to", hours, sizeMB),
		happened: fmt.Sprintf("the disk buffer filled, then each new fragment evicted the oldest (%d evictions, each reported); %.1f MB on disk; resident memory %.1f MB at most in the first %d s after it was full, %.1f MB in the next %d s; %s",
			int(dropped), float64(onDisk)/1e6, float64(firstHalf)/1e6, len(rss)/2, float64(secondHalf)/1e6, len(rss)-len(rss)/2, h),
		lost: fmt.Sprintf("%d frames evicted, all reported (the buffer's limit)", int(dropped)*30), dups: 0, recovery: "–"})
}

func maxOf(v []int64) int64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
