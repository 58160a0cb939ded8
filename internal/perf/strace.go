package perf

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Syscalls is the summary `strace -f -c -o FILE` writes: calls per system
// call, over every thread of the traced processes.
type Syscalls struct {
	Calls map[string]int64
	Total int64
}

// ParseStraceSummary parses strace's -c table:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 59.87    0.001784        1784         1           execve
//	...
//	100.00    0.002980          52        57         5 total
//
// The errors column is blank for calls that never failed, so the call
// count is found as the fourth field and the name as the last.
func ParseStraceSummary(b []byte) (Syscalls, error) {
	s := Syscalls{Calls: map[string]int64{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	header, total := false, false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "% time") {
			header = true
			continue
		}
		if !header || line == "" || strings.HasPrefix(line, "---") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return Syscalls{}, fmt.Errorf("strace summary: unexpected line %q", line)
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || n < 0 {
			return Syscalls{}, fmt.Errorf("strace summary: no call count in %q", line)
		}
		name := f[len(f)-1]
		if name == "total" {
			s.Total, total = n, true
			continue
		}
		s.Calls[name] += n
	}
	if !header || !total {
		return Syscalls{}, fmt.Errorf("strace summary: no table with a total line (was strace run with -c?)")
	}
	return s, nil
}

// Top returns the n most frequent system calls, most frequent first.
func (s Syscalls) Top(n int) []string {
	names := make([]string, 0, len(s.Calls))
	for k := range s.Calls {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if s.Calls[names[i]] != s.Calls[names[j]] {
			return s.Calls[names[i]] > s.Calls[names[j]]
		}
		return names[i] < names[j]
	})
	return names[:min(n, len(names))]
}
