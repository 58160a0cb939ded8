package perf

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"time"
)

// StartAndFind starts cmd and waits for a line of its standard output that
// matches re; it returns the first group. The rest of the output is
// discarded until the program ends.
func StartAndFind(cmd *exec.Cmd, re *regexp.Regexp) (string, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case s := <-found:
		return s, nil
	case <-time.After(20 * time.Second):
		return "", errors.New("it did not say where it listens within 20 s")
	}
}

// Stop ends a program with Ctrl-C, then for good after 10 s.
func Stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
