package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// BuildKvsgo builds the kvsgo binary from the module at repoDir into dir,
// as it is shipped (CGO_ENABLED=0), and returns its path. With tags (e.g.
// "camera", the build with put, run and get only), the binary is named
// after them.
func BuildKvsgo(ctx context.Context, repoDir, dir string, tags ...string) (string, error) {
	name, args := "kvsgo", []string{"build"}
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", bin, "./cmd/kvsgo")...)
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// Server is a running `kvsgo serve`, started by StartServe.
type Server struct {
	URL     string // http://127.0.0.1:PORT
	PID     int
	DataDir string
	LogPath string // its standard error

	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, once done is closed
}

// ServeOptions says how to start `kvsgo serve`.
type ServeOptions struct {
	Binary  string
	DataDir string // fresh for each server: numbers from a used store differ
	LogPath string // where its log goes
	Args    []string
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// StartServe starts `kvsgo serve` on a free loopback port and waits until
// it says where it listens.
func StartServe(ctx context.Context, o ServeOptions) (*Server, error) {
	logf, err := os.Create(o.LogPath)
	if err != nil {
		return nil, fmt.Errorf("kvsgo serve's log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", o.DataDir}, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kvsgo serve: %w", err)
	}
	s := &Server{PID: cmd.Process.Pid, DataDir: o.DataDir, LogPath: o.LogPath, cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		s.err = cmd.Wait()
		close(s.done)
	}()
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	select {
	case s.URL = <-found:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("kvsgo serve exited before listening (%v); its log is %s", s.err, o.LogPath)
	case <-wait.Done():
		_ = s.Stop()
		return nil, fmt.Errorf("kvsgo serve did not say where it listens within 15 s; its log is %s", o.LogPath)
	}
}

// Usage reads the server's CPU time and memory from /proc.
func (s *Server) Usage() (ProcUsage, error) { return ReadProc(s.PID) }

// Stop asks the server to shut down (SIGTERM), and kills it if it has not
// within 15 s.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("kvsgo serve did not stop within 15 s of SIGTERM and was killed")
	}
	var ee *exec.ExitError
	if s.err != nil && !errors.As(s.err, &ee) {
		return s.err
	}
	if s.err != nil {
		return fmt.Errorf("kvsgo serve: %w; its log is %s", s.err, s.LogPath)
	}
	return nil
}
