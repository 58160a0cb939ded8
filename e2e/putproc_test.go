package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// putProc is a running `kvsgo put` watched from outside, as an operator
// would: its /metrics (Prometheus, the process's goroutines among them)
// and /proc (open files, memory).
type putProc struct {
	cmd     *exec.Cmd
	metrics string
	out     *lockedBuilder
	errOut  *lockedBuilder
	done    chan struct{}
	code    int
	lastMu  sync.Mutex
	last    map[string]float64 // the last metrics read
}

// startPutProc runs kvsgo put with the e2e credentials and a metrics
// address; stdin, when not nil, feeds --source -.
func startPutProc(t *testing.T, stdin io.Reader, args ...string) *putProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(binary, append([]string{"put", "--quiet", "--metrics-addr", addr}, args...)...)
	cmd.Env = awsEnv()
	if stdin != nil {
		cmd.Stdin = stdin
	}
	p := &putProc{cmd: cmd, metrics: "http://" + addr + "/metrics", out: &lockedBuilder{b: &strings.Builder{}},
		errOut: &lockedBuilder{b: &strings.Builder{}}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		}
		close(p.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

// wait waits for put to end and returns its output and exit status.
func (p *putProc) wait(t *testing.T) (string, string, int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(4 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("kvsgo put did not finish: %s", p.errOut.String())
	}
	return p.out.String(), p.errOut.String(), p.code
}

// kill9 kills put with SIGKILL and waits for it.
func (p *putProc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// scrape reads put's metrics: name (with labels) to value; nil when put
// does not answer.
func (p *putProc) scrape() map[string]float64 {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	p.lastMu.Lock()
	p.last = m
	p.lastMu.Unlock()
	return m
}

func (p *putProc) metric(name string) float64 { return p.scrape()[name] }

// waitMetric waits until a metric satisfies ok, and returns it.
func (p *putProc) waitMetric(t *testing.T, name string, within time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := p.scrape()
		if v, found := m[name]; found && ok(v) {
			return v
		}
		select {
		case <-p.done:
			t.Fatalf("kvsgo put ended while waiting for %s: %s", name, p.errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never came right (last %v) within %s: %s", name, m[name], within, p.errOut.String())
		}
	}
}

// recovery waits for the service to persist a fragment after a fault
// ended, and says how long that took.
func (p *putProc) recovery(t *testing.T, ended time.Time, persistedBefore float64) time.Duration {
	t.Helper()
	p.waitMetric(t, "kvsgo_put_fragments_persisted", 3*time.Minute, func(v float64) bool { return v > persistedBefore })
	return time.Since(ended)
}

// health is what must not grow in a long run or through a fault.
type health struct {
	goroutines, fds int
	rss             int64 // bytes
}

func (h health) String() string {
	return fmt.Sprintf("%d goroutines, %d open files, %.1f MB resident", h.goroutines, h.fds, float64(h.rss)/1e6)
}

func (p *putProc) health(t *testing.T) health {
	t.Helper()
	pid := p.cmd.Process.Pid
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open files of kvsgo put: %v", err)
	}
	return health{goroutines: int(p.metric("go_goroutines")), fds: len(entries), rss: rssOf(t, pid)}
}

// rssOf reads a process's resident memory from /proc.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// settled waits until put is back to its health before the fault (a
// couple of goroutines and files of slack for connections being made),
// within bounded memory; it fails on a leak.
func (p *putProc) settled(t *testing.T, before health, maxRSS int64) health {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := p.health(t)
		if h.goroutines <= before.goroutines+2 && h.fds <= before.fds+2 && h.rss <= maxRSS {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvsgo put did not settle after the fault: %s, before it %s (at most %.0f MB allowed)", h, before, float64(maxRSS)/1e6)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clips are unique-frame test videos (no two frames alike, so a frame
// lost or sent twice shows), a key frame every 30 frames (1 s fragments).
var clips struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// uniqueClip makes (once per test binary) a 320x240 30 fps H.264 clip of
// the given seconds; negate gives a second clip unlike the first.
func uniqueClip(t *testing.T, seconds int, negate bool) string {
	t.Helper()
	clips.Lock()
	defer clips.Unlock()
	key := fmt.Sprintf("%d-%v", seconds, negate)
	if p, ok := clips.paths[key]; ok {
		return p
	}
	if clips.dir == "" {
		dir, err := os.MkdirTemp("", "kvsgo-e2e-clips")
		if err != nil {
			t.Fatal(err)
		}
		clips.dir, clips.paths = dir, map[string]string{}
	}
	path := filepath.Join(clips.dir, key+".h264")
	args := []string{"-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", strconv.Itoa(seconds)}
	if negate {
		args = append(args, "-vf", "negate")
	}
	args = append(args, "-c:v", "libx264", "-profile:v", "baseline", "-g", "30", "-sc_threshold", "0", "-bf", "0",
		"-pix_fmt", "yuv420p", "-f", "h264", "-y", path)
	mediatest.Run(t, nil, "ffmpeg", args...)
	clips.paths[key] = path
	return path
}

// removeClips is called by TestMain.
func removeClips() {
	if clips.dir != "" {
		os.RemoveAll(clips.dir)
	}
}

// compareFrames aligns what came back with what was sent (frames are
// unique): frames missing, and frames that came more than once or out of
// place.
func compareFrames(back, want []string) (lost, extra int) {
	i := 0
	for _, f := range back {
		if i < len(want) && f == want[i] {
			i++
			continue
		}
		// Skip ahead over frames that never came.
		j := i
		for j < len(want) && want[j] != f {
			j++
		}
		if j < len(want) {
			lost += j - i
			i = j + 1
			continue
		}
		extra++
	}
	return lost + len(want) - i, extra
}

// framesBack decodes GetMedia's stream from the earliest fragment.
func framesBack(t *testing.T, base, stream string) []string {
	t.Helper()
	got := filepath.Join(t.TempDir(), "got.mkv")
	if err := os.WriteFile(got, getMedia(t, base, stream), 0o644); err != nil {
		t.Fatal(err)
	}
	return mediatest.FrameMD5(t, got, nil, "", "v:0")
}
