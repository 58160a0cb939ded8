package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"github.com/kvsgo/kvsgo/internal/perf"
)

var benchLine = regexp.MustCompile(`^(Benchmark|ok|FAIL|---)`)

// micro runs the Go benchmarks of every package.
func (b *bench) micro(ctx context.Context) (string, error) {
	load0, _ := perf.ReadLoad()
	progress("Go micro-benchmarks, -benchtime %s", b.s.benchtime)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", b.s.benchtime, "./...")
	out, err := cmd.CombinedOutput()
	var keep []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line := sc.Text(); benchLine.MatchString(line) && !strings.HasPrefix(line, "ok") {
			keep = append(keep, line)
		}
	}
	if err != nil {
		return "", fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	load1, _ := perf.ReadLoad()
	var w strings.Builder
	w.WriteString(b.header(load0, load1))
	fmt.Fprintf(&w, "\n`go test -run '^$' -bench . -benchmem -benchtime %s ./...`:\n\n```\n%s\n```\n", b.s.benchtime, strings.Join(keep, "\n"))
	return w.String(), nil
}
