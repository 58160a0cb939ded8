package perf

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary is the distribution of a set of delays.
type Summary struct {
	N                  int
	P50, P95, P99, Max time.Duration
}

// Summarize returns the nearest-rank percentiles of ds (which it sorts).
// The zero Summary stands for no samples.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	return Summary{N: len(ds), P50: Percentile(ds, 50), P95: Percentile(ds, 95), P99: Percentile(ds, 99), Max: ds[len(ds)-1]}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. No interpolation: every value reported was measured.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// String formats the summary in milliseconds, "p50/p95/p99/max".
func (s Summary) String() string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s / %s", Millis(s.P50), Millis(s.P95), Millis(s.P99), Millis(s.Max))
}

// Millis formats d in milliseconds with a precision that suits it.
func Millis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10 && ms > -10:
		return fmt.Sprintf("%.1f", ms)
	default:
		return fmt.Sprintf("%.0f", ms)
	}
}

// Median returns the median of xs (the mean of the middle two for an even
// count), leaving xs unchanged; 0 for none.
func Median[T ~int64 | ~float64 | ~int](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianSummary is the summary whose every field is the median of that
// field over the runs: how repeated runs are quoted.
func MedianSummary(runs []Summary) Summary {
	var n []int
	var p50, p95, p99, mx []time.Duration
	for _, r := range runs {
		if r.N == 0 {
			continue
		}
		n = append(n, r.N)
		p50, p95, p99, mx = append(p50, r.P50), append(p95, r.P95), append(p99, r.P99), append(mx, r.Max)
	}
	return Summary{N: Median(n), P50: Median(p50), P95: Median(p95), P99: Median(p99), Max: Median(mx)}
}
