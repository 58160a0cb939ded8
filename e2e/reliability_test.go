package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The fault suite's results: each fault test records what happened, and
// with KVSGO_WRITE_RELIABILITY=1 (scripts/reliability) TestMain writes
// them into docs/RELIABILITY.md's table. Every number in it comes from a
// run.
type reliabilityRow struct {
	order    int // where the row goes in the table
	fault    string
	happened string
	lost     string // frames lost, as measured from GetMedia (and what put reported)
	dups     int    // frames GetMedia returned more than once
	recovery string
}

var reliability struct {
	sync.Mutex
	rows []reliabilityRow
}

func recordReliability(r reliabilityRow) {
	reliability.Lock()
	defer reliability.Unlock()
	reliability.rows = append(reliability.rows, r)
}

// durations formats recovery times: one, or the slowest and the median.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 1 {
		return s[0].Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("%s median, %s slowest (%d faults)", s[len(s)/2].Round(10*time.Millisecond), s[len(s)-1].Round(10*time.Millisecond), len(s))
}

const (
	tableStart = "<!-- fault table: written by scripts/reliability, do not edit -->"
	tableEnd   = "<!-- end of fault table -->"
)

// writeReliability replaces the table in docs/RELIABILITY.md.
func writeReliability() error {
	if os.Getenv("KVSGO_WRITE_RELIABILITY") != "1" {
		return nil
	}
	reliability.Lock()
	rows := slices.Clone(reliability.rows)
	reliability.Unlock()
	slices.SortStableFunc(rows, func(a, b reliabilityRow) int { return a.order - b.order })
	path := filepath.Join("..", "docs", "RELIABILITY.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(doc, []byte(tableStart)), bytes.Index(doc, []byte(tableEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no fault table markers", path)
	}
	var b strings.Builder
	b.WriteString(tableStart + "\n\n")
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "Run of %s at commit %s on %d cores (load average %s), %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		strings.TrimSpace(string(commit)), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "), runtime.Version())
	b.WriteString("| fault | what happened | frames lost | duplicate frames | recovery |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s |\n", r.fault, r.happened, r.lost, r.dups, r.recovery)
	}
	b.WriteString("\n")
	out := append(append(append([]byte{}, doc[:i]...), b.String()...), doc[j:]...)
	return os.WriteFile(path, out, 0o644)
}
