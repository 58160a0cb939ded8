// Command kvsgo streams camera video to Amazon Kinesis Video Streams.
package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

func main() {
	put := len(os.Args) > 1 && os.Args[1] == "put"
	if put && os.Getenv("GOMAXPROCS") == "" {
		// One stream is light work that wakes up for every frame; with a
		// single P the scheduler does not also wake a second thread to
		// look for work each time. Measured: 18% less CPU for 1080p30
		// (docs/BENCHMARKS.md). GOMAXPROCS in the environment wins.
		runtime.GOMAXPROCS(1)
	}
	if put && os.Getenv("GOGC") == "" {
		// put makes little garbage (a few collections a minute at 1080p):
		// collecting at 1.5 times the live heap instead of 2 costs nothing
		// measurable and keeps the peak memory half a MiB lower.
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
