package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// faultProxy sits between kvsgo put and kvsgo serve on loopback. It can
// cut every connection and refuse new ones for a while, and rewrite or drop
// the acknowledgement lines of PutMedia responses.
type faultProxy struct {
	url string
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	cutUntil time.Time
	conns    map[net.Conn]bool
	rewrite  func(line []byte) []byte // nil: pass; returns nil to drop
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, _ := url.Parse(target)
	p := &faultProxy{conns: map[net.Conn]bool{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == "/putMedia" && resp.StatusCode == 200 {
			resp.Body = p.filter(resp.Body)
		}
		return nil
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln, p.url = ln, "http://"+ln.Addr().String()
	p.srv = &http.Server{Handler: handler, ConnState: func(c net.Conn, s http.ConnState) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch s {
		case http.StateNew:
			if time.Now().Before(p.cutUntil) {
				c.Close()
				return
			}
			p.conns[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(p.conns, c)
		}
	}}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// cut drops every connection and refuses new ones for d.
func (p *faultProxy) cut(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutUntil = time.Now().Add(d)
	for c := range p.conns {
		c.Close()
	}
}

func (p *faultProxy) setRewrite(f func([]byte) []byte) {
	p.mu.Lock()
	p.rewrite = f
	p.mu.Unlock()
}

// filter passes ack lines through the current rewrite.
func (p *faultProxy) filter(body io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer body.Close()
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			line := append(sc.Bytes(), '\n')
			p.mu.Lock()
			rw := p.rewrite
			p.mu.Unlock()
			if rw != nil {
				line = rw(line)
			}
			if line != nil {
				if _, err := pw.Write(line); err != nil {
					return
				}
			}
		}
		pw.CloseWithError(sc.Err())
	}()
	return pr
}

// longClip is the baseline fixture three times: 9 s at 30 fps.
func longClip(t *testing.T) string {
	t.Helper()
	one := mediatest.ReadFixture(t, "h264-baseline.h264")
	p := filepath.Join(t.TempDir(), "clip.h264")
	if err := os.WriteFile(p, bytes.Repeat(one, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startPut runs kvsgo put in the background; wait returns its output.
func startPut(t *testing.T, args ...string) (wait func() (string, string, int)) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"put", "--quiet"}, args...)...)
	cmd.Env = awsEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var code int
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		close(done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return func() (string, string, int) {
		select {
		case <-done:
		case <-time.After(3 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("kvsgo put did not finish: %s", e.String())
		}
		return o.String(), e.String(), code
	}
}

// checkEveryFrameOnce: what GetMedia returns decodes to the source's
// frames, each exactly once, in order.
func checkEveryFrameOnce(t *testing.T, base, stream, src string) {
	t.Helper()
	got := filepath.Join(t.TempDir(), "got.mkv")
	if err := os.WriteFile(got, getMedia(t, base, stream), 0o644); err != nil {
		t.Fatal(err)
	}
	want := mediatest.FrameMD5(t, src, nil, "h264", "v:0")
	back := mediatest.FrameMD5(t, got, nil, "", "v:0")
	if !slices.Equal(back, want) {
		t.Fatalf("GetMedia decodes to %d frames; the source has %d (or they differ)", len(back), len(want))
	}
}

func waitFragments(t *testing.T, base, stream string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var l struct{ Fragments []json.RawMessage }
		if call(t, base, "/listFragments", map[string]any{"StreamName": stream}, &l) == 200 && len(l.Fragments) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d fragments arrived", n)
}

func serveArgs(dir string) []string {
	return []string{"--data", dir, "--access-key", creds.AccessKeyID, "--secret-key", creds.SecretAccessKey}
}

func TestPutSurvivesServerKillAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServeAt(t, listen, serveArgs(dir)...)
	src := longClip(t)
	wait := startPut(t, "--stream", "kill", "--source", src, "--endpoint", srv.url, "--ack-timeout", "2s")
	waitFragments(t, srv.url, "kill", 3)
	_ = srv.cmd.Process.Kill()
	_ = srv.cmd.Wait()
	time.Sleep(time.Second)
	srv = startServeAt(t, listen, serveArgs(dir)...)
	out, errOut, code := wait()
	if code != 0 || !strings.Contains(out, "0 dropped fragments") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "reconnecting") {
		t.Fatalf("the reconnect was not reported:\n%s", errOut)
	}
	checkEveryFrameOnce(t, srv.url, "kill", src)
}

func TestPutSurvivesCutConnection(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	proxy := newFaultProxy(t, srv.url)
	src := longClip(t)
	wait := startPut(t, "--stream", "cut", "--source", src, "--endpoint", proxy.url, "--ack-timeout", "2s", "--close-timeout", "90s")
	waitFragments(t, srv.url, "cut", 3)
	proxy.cut(30 * time.Second)
	out, errOut, code := wait()
	if code != 0 || !strings.Contains(out, "0 dropped fragments") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	checkEveryFrameOnce(t, srv.url, "cut", src)
}

func TestPutResendsAfterErrorAcks(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	proxy := newFaultProxy(t, srv.url)
	var mu sync.Mutex
	left := 2
	proxy.setRewrite(func(line []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		if left > 0 && bytes.Contains(line, []byte(`"PERSISTED"`)) {
			left--
			return bytes.Replace(line, []byte(`"EventType":"PERSISTED"`), []byte(`"EventType":"ERROR","ErrorId":5000,"ErrorCode":"INTERNAL_ERROR"`), 1)
		}
		return line
	})
	src := longClip(t)
	out, errOut, code := startPut(t, "--stream", "err", "--source", src, "--endpoint", proxy.url, "--ack-timeout", "2s")()
	if code != 0 || !strings.Contains(out, "2 errors") || !strings.Contains(errOut, "5000 INTERNAL_ERROR") || !strings.Contains(errOut, "sent again") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	checkEveryFrameOnce(t, srv.url, "err", src)
}

func TestPutReconnectsWhenNoAcksCome(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	proxy := newFaultProxy(t, srv.url)
	proxy.setRewrite(func([]byte) []byte { return nil })
	src := longClip(t)
	wait := startPut(t, "--stream", "silent", "--source", src, "--endpoint", proxy.url, "--ack-timeout", "2s")
	time.Sleep(5 * time.Second)
	proxy.setRewrite(nil)
	out, errOut, code := wait()
	if code != 0 || !strings.Contains(errOut, "no acknowledgement for 2s") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	checkEveryFrameOnce(t, srv.url, "silent", src)
}

func TestPutWithNoServer(t *testing.T) {
	t.Parallel()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	start := time.Now()
	out, errOut, code := startPut(t, "--stream", "none", "--source", mediatest.Fixture(t, "h264-baseline.h264"),
		"--endpoint", endpoint, "--give-up-after", "3s")()
	if code == 0 || !strings.Contains(errOut, "cannot reach Kinesis Video Streams") || !strings.Contains(errOut, "giving up") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("took %s to give up", time.Since(start))
	}
}

func TestPutWithBadCredentials(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	out, errOut, code := startPut(t, "--stream", "creds", "--source", mediatest.Fixture(t, "h264-baseline.h264"),
		"--endpoint", srv.url, "--access-key", creds.AccessKeyID, "--secret-key", "wrong")()
	if code == 0 || !strings.Contains(errOut, "credentials refused") || strings.Contains(errOut, "retrying") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
