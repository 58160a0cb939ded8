package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/kvsgo/kvsgo/internal/perf"
)

// FreshServers returns a Target maker for Steps that starts a new
// `kvsgo serve` (bin, with args) for every run, its data in a new
// directory under dir that is removed when it stops (hundreds of streams
// write gigabytes). Its log stays in dir; a panic in it fails the run.
func FreshServers(bin, dir string, args []string) func(context.Context) (Target, error) {
	var n atomic.Int32
	return func(ctx context.Context) (Target, error) {
		i := n.Add(1)
		data := filepath.Join(dir, fmt.Sprintf("data%d", i))
		logPath := filepath.Join(dir, fmt.Sprintf("serve%d.log", i))
		srv, err := perf.StartServe(ctx, perf.ServeOptions{Binary: bin, DataDir: data, LogPath: logPath, Args: args})
		if err != nil {
			return Target{}, err
		}
		return Target{Endpoint: srv.URL, PID: srv.PID, Stop: func() error {
			err := srv.Stop()
			if p := panics(logPath); p != "" {
				err = errors.Join(err, fmt.Errorf("kvsgo serve logged a panic (log: %s):\n%s", logPath, p))
			}
			if rmErr := os.RemoveAll(data); rmErr != nil {
				err = errors.Join(err, rmErr)
			}
			return err
		}}, nil
	}
}

// panics returns the first lines of a log that report a panic: a load
// test must not hide one.
func panics(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, "panic") {
			out = append(out, line)
			if len(out) == 5 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
