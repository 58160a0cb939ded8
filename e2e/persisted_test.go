package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fsyncNumber is fsync's system call number, as /proc/PID/task/TID/syscall
// shows it.
func fsyncNumber(t *testing.T) string {
	switch runtime.GOARCH {
	case "amd64":
		return "74"
	case "arm64":
		return "82"
	}
	t.Fatalf("fsync's system call number on %s is not known to this test", runtime.GOARCH)
	return ""
}

// childPID is the one child of process pid.
func childPID(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) == 1 {
			n, _ := strconv.Atoi(f[0])
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d has no child", pid)
	return 0
}

// inSegmentFsync reports whether a thread of process pid is in fsync of a
// segment file (a fragment's media, synced before its index entry is
// written): not of a directory, whose sync comes before a fragment is
// written and so before any ack a kill there could expose.
func inSegmentFsync(pid int, nr string) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		f := strings.Fields(string(b))
		if err != nil || len(f) < 2 || f[0] != nr {
			continue
		}
		fd, err := strconv.ParseInt(strings.TrimPrefix(f[1], "0x"), 16, 64)
		if err != nil {
			continue
		}
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); err == nil && strings.HasSuffix(target, ".mkv") {
			return true
		}
	}
	return false
}

// TestPersistedOnlyOnceStored (issue 15 item 2): serve is killed (SIGKILL)
// while a fragment it has received whole is not yet stored: strace holds
// each of serve's fsyncs for two seconds, so a fragment that has arrived
// waits that long before its index entry is written, and the kill comes
// while a thread of serve is held in fsync of a segment file (a
// directory's fsync, when a segment is created, comes before the fragment
// is written: a kill there proves nothing). A server that acknowledged
// PERSISTED on arrival would have told the producer to forget a fragment
// it then lost; kvsgo serve acknowledges only what is stored, so kvsgo
// put sends the fragment again to the restarted server and every frame
// arrives exactly once.
func TestPersistedOnlyOnceStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command("strace", append([]string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e", "inject=fsync:delay_enter=2000000",
		binary, "serve", "--listen", listen}, serveArgs(dir)...)...)
	srv := startServeCmd(t, cmd)
	servePID := childPID(t, cmd.Process.Pid)
	src := longClip(t)
	wait := startPut(t, "--stream", "window", "--source", src, "--endpoint", srv.url, "--ack-timeout", "3s")
	waitFragments(t, srv.url, "window", 1)
	nr := fsyncNumber(t)
	deadline := time.Now().Add(30 * time.Second)
	for !inSegmentFsync(servePID, nr) {
		if time.Now().After(deadline) {
			t.Fatal("serve never entered fsync of a segment file while receiving")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(servePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // strace ends with its tracee
	srv = startServeAt(t, listen, serveArgs(dir)...)
	out, errOut, code := wait()
	if code != 0 || !strings.Contains(out, "0 dropped fragments") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "reconnecting") {
		t.Fatalf("kvsgo put never lost its connection: the kill missed\n%s", errOut)
	}
	checkEveryFrameOnce(t, srv.url, "window", src)
}
