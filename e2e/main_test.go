// Package e2e runs the real kvsgo binary, as users do.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvsgo-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kvsgo")
	build := exec.Command("go", "build", "-o", binary, "../cmd/kvsgo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building kvsgo: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	// A table from a failed run would hide the failing cases' rows.
	if code == 0 {
		if err := writeReliability(); err != nil {
			fmt.Fprintln(os.Stderr, "writing docs/RELIABILITY.md:", err)
			code = 1
		}
	}
	removeClips()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serveProc is a running `kvsgo serve`.
type serveProc struct {
	cmd *exec.Cmd
	url string
	log *lockedBuilder
}

var listenRE = regexp.MustCompile(`listening on (http://\S+)`)

// startServe runs `kvsgo serve` on a free loopback port and waits until it
// says where it listens.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	return startServeAt(t, "127.0.0.1:0", args...)
}

func startServeAt(t *testing.T, listen string, args ...string) *serveProc {
	t.Helper()
	return startServeCmd(t, exec.Command(binary, append([]string{"serve", "--listen", listen}, args...)...))
}

// startServeCmd runs cmd, which runs `kvsgo serve` (under strace, say),
// and waits until it says where it listens.
func startServeCmd(t *testing.T, cmd *exec.Cmd) *serveProc {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, log: &lockedBuilder{b: &strings.Builder{}}}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case p.url = <-found:
		return p
	case <-ctx.Done():
		t.Fatalf("kvsgo serve did not start: %s", p.log.String())
	}
	return nil
}
