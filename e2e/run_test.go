package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runProc is a running `kvsgo run --config`.
type runProc struct {
	cmd          *exec.Cmd
	config       string
	metrics      string
	stdout, logs *lockedBuilder
	done         chan error
}

// startRun writes the config (%s is the server's URL, %m the metrics
// address) and starts kvsgo run on it.
func startRun(t *testing.T, srv *serveProc, yaml string) *runProc {
	t.Helper()
	r := &runProc{config: filepath.Join(t.TempDir(), "kvsgo.yaml"), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		stdout: &lockedBuilder{b: &strings.Builder{}}, logs: &lockedBuilder{b: &strings.Builder{}}, done: make(chan error, 1)}
	r.write(t, srv, yaml)
	r.cmd = exec.Command(binary, "run", "--config", r.config)
	r.cmd.Env = awsEnv()
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("kvsgo run's log:\n%s", r.logs.String())
		}
	})
	return r
}

func (r *runProc) write(t *testing.T, srv *serveProc, yaml string) {
	t.Helper()
	yaml = strings.NewReplacer("%s", srv.url, "%m", r.metrics, "%u", strconv.Itoa(closedPort(t))).Replace(yaml)
	if err := os.WriteFile(r.config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int { return freePort(t) }

// metricsText returns the run's /metrics.
func (r *runProc) metricsText() string {
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// metric returns a labelled metric's value from the run's /metrics, -1 if
// absent.
func (r *runProc) metric(name, stream string) float64 {
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*stream="` + regexp.QuoteMeta(stream) + `"[^}]*\} (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// waitMetric waits until the metric reaches at least min.
func (r *runProc) waitMetric(t *testing.T, name, stream string, min float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.metric(name, stream) < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s{stream=%q} never reached %v (now %v)", name, stream, min, r.metric(name, stream))
		}
		select {
		case err := <-r.done:
			t.Fatalf("kvsgo run exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitLog waits until the run's log matches re, and returns the match.
func (r *runProc) waitLog(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := rx.FindStringSubmatch(r.logs.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %s", re)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig and waits for the exit.
func (r *runProc) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	_ = r.cmd.Process.Signal(sig)
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("kvsgo run did not stop on %v", sig)
	}
	return nil
}

// fragmentsListed is what the AWS CLI lists of a stream.
func fragmentsListed(t *testing.T, srv *serveProc, stream string) int {
	t.Helper()
	var out struct {
		Fragments []struct{ FragmentNumber string }
	}
	if err := json.Unmarshal([]byte(awsCLI(t, srv.url, "kinesis-video-archived-media", "list-fragments", "--stream-name", stream)), &out); err != nil {
		t.Fatal(err)
	}
	return len(out.Fragments)
}

// streamSummary returns a stream's fragments and persisted from its last
// summary line.
func streamSummary(t *testing.T, logs, stream string) (fragments, persisted int) {
	t.Helper()
	all := regexp.MustCompile(`msg="\d+ frames, (\d+) fragments, (\d+) persisted, [^"]*" stream=`+regexp.QuoteMeta(stream)+`\n`).FindAllStringSubmatch(logs, -1)
	if all == nil {
		t.Fatalf("no summary of stream %s in the log", stream)
	}
	m := all[len(all)-1]
	fragments, _ = strconv.Atoi(m[1])
	persisted, _ = strconv.Atoi(m[2])
	return
}

const runCommon = `endpoint: %s
region: us-east-1
metrics-addr: %m
`

// TestRunIsolation: a command that exits and a missing camera beside two
// testsrc streams, all against one kvsgo serve: the two keep persisting
// fragments while the others are retried with back-off, /healthz names
// the failing ones, and SIGTERM makes each stream deliver what it holds.
func TestRunIsolation(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	r := startRun(t, srv, runCommon+`streams:
  - stream: porch
    source: testsrc
  - stream: exits
    source: exec:exit 3
  - stream: nodevice
    source: v4l2:/dev/video-kvsgo-missing
  - stream: gate
    source: testsrc
  - stream: refused
    source: testsrc
    no-create: true
  - stream: unreachable
    source: testsrc
    endpoint: http://127.0.0.1:%u
    give-up-after: 2s
`)
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "porch", 2)
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "gate", 2)
	porch, gate := fragmentsListed(t, srv, "porch"), fragmentsListed(t, srv, "gate")
	// Failures meanwhile, retried with back-off: 1 s, 2 s, 4 s…
	r.waitMetric(t, "kvsgo_run_stream_restarts", "exits", 3)
	r.waitLog(t, `level=ERROR msg="stream failed; the other streams go on; retrying" stream=exits err=".*exit status 3" in=4s`)
	// A camera program is restarted by its source, with its own back-off.
	r.waitLog(t, `level=ERROR msg="the program failed; restarting it" stream=nodevice .*Cannot open video device /dev/video-kvsgo-missing.* in=4s`)
	r.waitLog(t, `level=ERROR msg="stream failed; the other streams go on; retrying" stream=refused err=".*refused.*" in=2s`)
	r.waitLog(t, `level=ERROR msg="stream failed; the other streams go on; retrying" stream=unreachable err="could not stream for 2s; giving up[^"]*" in=2s`)
	// The working streams go on, the same connection all along.
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "porch", float64(porch+3))
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "gate", float64(gate+3))
	for _, s := range []string{"porch", "gate"} {
		if n := r.metric("kvsgo_put_reconnects", s); n != 0 {
			t.Errorf("%s reconnected %v times", s, n)
		}
		// Losses by reason, as put's own /metrics has them.
		for _, reason := range []string{"before_key_frame", "overflow", "unacknowledged"} {
			line := `kvsgo_put_frames_lost{reason="` + reason + `",stream="` + s + `"} 0`
			if body := r.metricsText(); !strings.Contains(body, "\n"+line+"\n") {
				t.Errorf("no %s in /metrics:\n%s", line, body)
			}
		}
	}
	if a, b := fragmentsListed(t, srv, "porch"), fragmentsListed(t, srv, "gate"); a < porch+3 || b < gate+3 {
		t.Fatalf("ListFragments did not grow beside the failing streams: porch %d → %d, gate %d → %d", porch, a, gate, b)
	}
	// /healthz names the four failing streams. SIGTERM is sent while the
	// unreachable one waits to retry: then it holds nothing, and every
	// stream can say it delivered everything (while it tries to connect,
	// it holds frames it cannot deliver, and run rightly fails).
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + r.metrics + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(body), "unhealthy: 4 of 6 streams") ||
			!regexp.MustCompile(`(?m)^exits: (retrying|starting)`).Match(body) || !regexp.MustCompile(`(?m)^nodevice: starting: .*video-kvsgo-missing`).Match(body) ||
			!regexp.MustCompile(`(?m)^refused: (retrying|starting)`).Match(body) || !regexp.MustCompile(`(?m)^unreachable: (retrying|starting|streaming, not connected)`).Match(body) ||
			strings.Contains(string(body), "porch") || strings.Contains(string(body), "gate") {
			t.Fatalf("/healthz: %d %s", resp.StatusCode, body)
		}
		if regexp.MustCompile(`(?m)^unreachable: retrying`).Match(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unreachable stream never waited to retry: /healthz %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := r.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("kvsgo run after SIGTERM: %v", err)
	}
	if !strings.Contains(r.stdout.String(), "kvsgo run: 6 streams stopped, everything delivered") {
		t.Fatalf("stdout: %s", r.stdout.String())
	}
	for _, s := range []string{"porch", "gate"} {
		frags, persisted := streamSummary(t, r.logs.String(), s)
		if frags != persisted || fragmentsListed(t, srv, s) != persisted {
			t.Errorf("%s: %d fragments, %d persisted, %d listed after SIGTERM", s, frags, persisted, fragmentsListed(t, srv, s))
		}
	}
}

// producerConnections counts the PutMedia connections serve logged for a
// stream.
func producerConnections(srv *serveProc, stream string) int {
	return len(regexp.MustCompile(`msg="producer connected" stream=`+regexp.QuoteMeta(stream)+` `).FindAllString(srv.log.String(), -1))
}

// TestRunReload: SIGHUP with one stream unchanged, one removed, one added
// and one changed: the unchanged one keeps its PutMedia connection (serve
// saw it connect once), the removed one's last fragments are persisted
// before it stops, the new one streams. A broken file is then refused and
// the running set stays.
func TestRunReload(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	r := startRun(t, srv, runCommon+`streams:
  - stream: keep
    source: testsrc
  - stream: gone
    source: testsrc
  - stream: changed
    source: testsrc
`)
	for _, s := range []string{"keep", "gone", "changed"} {
		r.waitMetric(t, "kvsgo_put_fragments_persisted", s, 2)
	}
	fi, err := os.Stat(r.config)
	if err != nil {
		t.Fatal(err)
	}
	// The new file keeps the old time, so that only SIGHUP reloads it.
	r.write(t, srv, runCommon+`# keep moved down a line: still the same stream
streams:
  - stream: changed
    source: testsrc
    fps: 10
  - stream: keep
    source: testsrc
  - stream: new
    source: testsrc
`)
	if err := os.Chtimes(r.config, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	_ = r.cmd.Process.Signal(syscall.SIGHUP)
	r.waitLog(t, `msg="config reloaded \(SIGHUP\)" kept=\[keep\] restarted=\[changed\] stopped=\[gone\] started=\[new\]`)
	frags, persisted := streamSummary(t, r.logs.String(), "gone")
	if frags < 2 || frags != persisted {
		t.Fatalf("the removed stream stopped with %d fragments, %d persisted", frags, persisted)
	}
	if n := fragmentsListed(t, srv, "gone"); n != frags {
		t.Fatalf("the removed stream sent %d fragments, the server lists %d", frags, n)
	}
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "new", 2)
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "changed", 2)
	if r.metric("kvsgo_put_frames", "gone") != -1 {
		t.Fatal("the removed stream is still in /metrics")
	}

	// A broken file, noticed by its time: refused, the streams go on.
	keepBefore := r.metric("kvsgo_put_fragments_persisted", "keep")
	r.write(t, srv, runCommon+"streams:\n  - stream: keep\n    source: testsrc\n    fsp: 10\n")
	r.waitLog(t, `level=ERROR msg="config not reloaded \(the file changed\); the running streams go on as they were" err=".*kvsgo.yaml:7: unknown key \\"fsp\\"; did you mean \\"fps\\"\?`)
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "keep", keepBefore+2)
	r.waitMetric(t, "kvsgo_put_fragments_persisted", "new", 3)

	if n := producerConnections(srv, "keep"); n != 1 {
		t.Fatalf("the unchanged stream connected %d times, want 1 (the reload touched it)", n)
	}
	if n := producerConnections(srv, "changed"); n != 2 {
		t.Fatalf("the changed stream connected %d times, want 2 (restarted once)", n)
	}
	if err := r.stop(t, os.Interrupt); err != nil {
		t.Fatalf("kvsgo run after Ctrl-C: %v", err)
	}
	for _, s := range []string{"keep", "new", "changed"} {
		frags, persisted := streamSummary(t, r.logs.String(), s)
		if frags != persisted {
			t.Errorf("%s: %d fragments, %d persisted after Ctrl-C", s, frags, persisted)
		}
	}
}

// TestRunSecondSignal: at SIGTERM a stream whose service cannot be reached
// waits for it (up to close-timeout); a second SIGTERM quits at once,
// saying what is lost.
func TestRunSecondSignal(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	r := startRun(t, srv, runCommon+`streams:
  - stream: cut-off
    source: testsrc
    endpoint: http://127.0.0.1:%u
`)
	r.waitLog(t, `stream=cut-off`)
	r.waitLog(t, `cannot reach Kinesis Video Streams`)
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	r.waitLog(t, `msg="stopping every stream: each delivers what it holds"`)
	// Without the second signal, kvsgo would wait its 30 s close-timeout
	// and exit 1.
	err := r.stop(t, syscall.SIGTERM)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("after a second SIGTERM: %v", err)
	}
	r.waitLog(t, `level=WARN msg="quitting at once: what was not yet persisted is lost, except what is in a --buffer-dir" signal=terminated`)
}
