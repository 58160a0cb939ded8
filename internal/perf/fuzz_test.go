package perf

import (
	"os"
	"testing"
)

// FuzzParseProc feeds the /proc parsers anything: they must not panic, and
// what they accept must be sane.
func FuzzParseProc(f *testing.F) {
	f.Add([]byte("4242 (kv s) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 7 8 20 0 9 0 100 1000000 500\n"))
	f.Add([]byte("Name:\tkvsgo\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"))
	f.Add([]byte("VmHWM:\t20480 kB\nVmRSS:\t-240 kB\n")) // once accepted as negative memory
	f.Add([]byte("7.37 5.70 4.92 7/191 31142\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, s, err := ParseStat(b); err == nil && (u < 0 || s < 0) {
			t.Fatalf("negative CPU time %v %v", u, s)
		}
		if peak, rss, err := ParseStatus(b); err == nil && (peak < 0 || rss < 0) {
			t.Fatalf("negative memory %d %d", peak, rss)
		}
		_, _ = ParseLoad(b)
	})
}

// FuzzParseStraceSummary: no panic on any input, and an accepted table
// has no negative counts.
func FuzzParseStraceSummary(f *testing.F) {
	if b, err := os.ReadFile("testdata/strace-c.txt"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("% time seconds usecs/call calls errors syscall\n1 2 3 4 5 total\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStraceSummary(b)
		if err != nil {
			return
		}
		for name, n := range s.Calls {
			if n < 0 {
				t.Fatalf("%s: %d calls", name, n)
			}
		}
		_ = s.Top(5)
	})
}
