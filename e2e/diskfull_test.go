package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// path. Mounting needs root, which CI has.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs to fill the disk of serve's data directory, which needs root (CI runs as root): run it as root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v %s", dir, err, out)
	}
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file until the disk is full and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xAB}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path
		}
	}
}

// waitLog waits until serve's log says want.
func waitLog(t *testing.T, srv *serveProc, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(srv.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("serve's log never said %q:\n%s", want, srv.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeDiskFull: serve's data directory is on a small disk that fills
// up while kvsgo put streams to it. serve refuses the fragments it cannot
// store with ERROR 5001 ARCHIVAL_ERROR acks and the control plane's calls
// that write with a 500 that says why, stays up, keeps what it had stored,
// and stores again once space is freed; the producer sends again what was
// refused, so every frame arrives exactly once and nothing acknowledged is
// lost.
func TestServeDiskFull(t *testing.T) {
	t.Parallel()
	disk := smallDisk(t, 16<<20)
	srv := startServe(t, serveArgs(filepath.Join(disk, "data"))...)
	src := longClip(t)
	wait := startPut(t, "--stream", "full", "--source", src, "--endpoint", srv.url, "--ack-timeout", "5s")
	waitFragments(t, srv.url, "full", 2)
	filler := fillDisk(t, disk)
	waitLog(t, srv, "disk is full")

	// The index has some room in pages it already holds: streams are
	// created until it needs a new one.
	var refused bytes.Buffer
	for i := 0; ; i++ {
		refused.Reset()
		code := callRaw(t, srv.url, "/createStream", map[string]any{"StreamName": fmt.Sprintf("more-%d", i), "DataRetentionInHours": 1}, &refused)
		if code == 200 && i < 1000 {
			continue
		}
		if code != 503 || !strings.Contains(refused.String(), "disk of its data directory is full") {
			t.Fatalf("createStream number %d on a full disk: %d %s", i, code, refused.String())
		}
		break
	}
	var list struct {
		Fragments []struct{ FragmentNumber string }
	}
	if code := call(t, srv.url, "/listFragments", map[string]any{"StreamName": "full"}, &list); code != 200 || len(list.Fragments) < 2 {
		t.Fatalf("listFragments on a full disk: %d, %d fragments", code, len(list.Fragments))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	out, errOut, exit := wait()
	if exit != 0 || !strings.Contains(out, "0 dropped fragments") {
		t.Fatalf("kvsgo put: exit %d\n%s\n%s", exit, out, errOut)
	}
	if !strings.Contains(errOut, "5001 ARCHIVAL_ERROR") || !strings.Contains(errOut, "sent again") {
		t.Fatalf("kvsgo put did not report the refused fragments:\n%s", errOut)
	}
	checkEveryFrameOnce(t, srv.url, "full", src)
	if code := call(t, srv.url, "/createStream", map[string]any{"StreamName": "another", "DataRetentionInHours": 1}, nil); code != 200 {
		t.Fatalf("createStream once space was freed: %d", code)
	}
	if strings.Contains(srv.log.String(), "panic") {
		t.Fatalf("serve's log has a panic:\n%s", srv.log.String())
	}
}
