package perf

import (
	"os"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestSummarizeNearestRank(t *testing.T) {
	// 1..100 ms, shuffled: the p-th percentile is p ms exactly.
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration((i*37)%100+1)*time.Millisecond)
	}
	got := Summarize(ds)
	want := Summary{N: 100, P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Fatalf("Summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	// Few samples: the 99th percentile of ten is the largest, never an
	// interpolated value nobody measured.
	got = Summarize(ms(5, 1, 9, 3, 7, 2, 8, 4, 6, 10))
	want = Summary{N: 10, P50: 5 * time.Millisecond, P95: 10 * time.Millisecond, P99: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	if got != want {
		t.Fatalf("Summarize(1..10 ms) = %+v, want %+v", got, want)
	}
	if got := Summarize(ms(42)); got.P50 != 42*time.Millisecond || got.P99 != 42*time.Millisecond {
		t.Fatalf("one sample: %+v", got)
	}
	if got := Summarize(nil); got != (Summary{}) || got.String() != "–" {
		t.Fatalf("no samples: %+v %q", got, got.String())
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median(3,1,2) = %v", got)
	}
	xs := []int64{40, 10, 30, 20}
	if got := Median(xs); got != 25 {
		t.Errorf("Median(40,10,30,20) = %v", got)
	}
	if xs[0] != 40 {
		t.Error("Median reordered its argument")
	}
	runs := []Summary{
		{N: 10, P50: 1, P95: 5, P99: 9, Max: 20},
		{},
		{N: 12, P50: 3, P95: 4, P99: 7, Max: 10},
		{N: 11, P50: 2, P95: 6, P99: 8, Max: 30},
	}
	if got, want := MedianSummary(runs), (Summary{N: 11, P50: 2, P95: 5, P99: 8, Max: 20}); got != want {
		t.Errorf("MedianSummary = %+v, want %+v (runs without samples left out)", got, want)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as a process may call
	// itself; utime 1234 and stime 56 ticks.
	line := "4242 (kv s) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 7 8 20 0 9 0 100 1000000 500 18446744073709551615\n"
	u, s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if u != 12340*time.Millisecond || s != 560*time.Millisecond {
		t.Fatalf("user %v system %v, want 12.34s 0.56s", u, s)
	}
	for _, bad := range []string{"", "4242 kvsgo S 1", "4242 (kvsgo) S 1 2 3", "4242 (kvsgo) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 56 7 8"} {
		if _, _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tkvsgo\nVmPeak:\t 1300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n"
	peak, rss, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if peak != 20<<20 || rss != 10<<20 {
		t.Fatalf("peak %d rss %d, want 20 MiB and 10 MiB (VmHWM, VmRSS; not VmPeak)", peak, rss)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmHWM:\t20 MB\nVmRSS:\t1 kB\n", "VmHWM:\tx kB\nVmRSS:\t1 kB\n"} {
		if _, _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
}

// TestReadProcSelf reads this test's own process: the CPU it burns and the
// memory it touches must show up.
func TestReadProcSelf(t *testing.T) {
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.RSS <= 0 || before.PeakRSS < before.RSS {
		t.Fatalf("implausible memory: %+v", before)
	}
	// Touch 64 MiB more than the peak so far.
	big := make([]byte, before.PeakRSS+64<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	deadline := time.Now().Add(20 * time.Second)
	x := 0
	var after ProcUsage
	for {
		for i := range 1_000_000 {
			x += i * int(big[i%len(big)])
		}
		if after, err = ReadProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after.CPU() > before.CPU() || time.Now().After(deadline) {
			break
		}
	}
	if after.CPU() <= before.CPU() {
		t.Fatalf("CPU time did not grow while spinning: before %+v after %+v", before, after)
	}
	if after.PeakRSS < before.PeakRSS+64<<20 {
		t.Fatalf("peak RSS %d MiB after touching %d MiB, was %d MiB", after.PeakRSS>>20, len(big)>>20, before.PeakRSS>>20)
	}
	if d := after.Sub(before); d.CPU() <= 0 || d.PeakRSS != after.PeakRSS {
		t.Fatalf("Sub: %+v", d)
	}
	_ = x
}

func TestParseStraceSummary(t *testing.T) {
	// Captured from `strace -f -c -o FILE ls /nonexistent` (strace 6.1).
	b, err := os.ReadFile("testdata/strace-c.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseStraceSummary(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 148 {
		t.Errorf("total %d, want 148", s.Total)
	}
	for name, want := range map[string]int64{"openat": 39, "munmap": 1, "statx": 2, "write": 4, "rseq": 1, "close": 22} {
		if s.Calls[name] != want {
			t.Errorf("%s: %d calls, want %d", name, s.Calls[name], want)
		}
	}
	var sum int64
	for _, n := range s.Calls {
		sum += n
	}
	if sum != s.Total {
		t.Errorf("calls add up to %d, total says %d", sum, s.Total)
	}
	if top := s.Top(3); len(top) != 3 || top[0] != "openat" || top[1] != "mmap" || top[2] != "close" {
		t.Errorf("Top(3) = %v", top)
	}
	if _, err := ParseStraceSummary([]byte("strace: exec: No such file or directory\n")); err == nil {
		t.Error("accepted output without a table")
	}
}

func TestParseLoad(t *testing.T) {
	l, err := ParseLoad([]byte("7.37 5.70 4.92 7/191 31142\n"))
	if err != nil || l != (Load{7.37, 5.70, 4.92}) {
		t.Fatalf("ParseLoad = %+v, %v", l, err)
	}
	if _, err := ParseLoad([]byte("7.37")); err == nil {
		t.Error("accepted a short line")
	}
	if _, err := ReadLoad(); err != nil {
		t.Error(err)
	}
}

func TestParseStatOverflow(t *testing.T) {
	line := "1 (x) S 1 1 1 0 -1 0 0 0 0 0 9223372036854775807 1 7 8\n"
	if u, s, err := ParseStat([]byte(line)); err == nil {
		t.Fatalf("accepted a utime that overflows: %v %v", u, s)
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:4567", "http://localhost:1", "http://[::1]:80", "http://127.0.0.2:9"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://kinesisvideo.us-east-1.amazonaws.com", "http://10.0.0.5:4567", "http://0.0.0.0:4567", "127.0.0.1:4567", ""} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
