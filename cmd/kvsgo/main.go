// Command kvsgo streams camera video to Amazon Kinesis Video Streams.
package main

import (
	"os"
	"runtime"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "put" && os.Getenv("GOMAXPROCS") == "" {
		// One stream is light work that wakes up for every frame; with a
		// single P the scheduler does not also wake a second thread to
		// look for work each time. Measured: 18% less CPU for 1080p30
		// (docs/BENCHMARKS.md). GOMAXPROCS in the environment wins.
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
