// Command pacefloor is the floor a paced live stream costs on this machine:
// the least a Go program can do per frame, one timer wake-up and one write.
// It connects to --addr, then writes --bytes every 1/--fps s for --seconds,
// sleeping to each frame's time, and exits. scripts/bench runs it beside
// kvsgo put and reads its CPU time from wait4, as DESIGN.md's "What a frame
// costs" did by hand.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "", "host:port to write to")
	fps := flag.Float64("fps", 30, "frames per second")
	size := flag.Int("bytes", 16_667, "bytes per frame (16 667 is 4 Mbit/s at 30 fps)")
	secs := flag.Float64("seconds", 20, "how long")
	flag.Parse()
	if err := run(*addr, *fps, *size, *secs); err != nil {
		fmt.Fprintln(os.Stderr, "pacefloor:", err)
		os.Exit(1)
	}
}

func run(addr string, fps float64, size int, secs float64) error {
	if addr == "" || fps <= 0 || size <= 0 || secs <= 0 {
		return fmt.Errorf("give --addr, and positive --fps, --bytes and --seconds")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	frame := make([]byte, size)
	interval := time.Duration(float64(time.Second) / fps)
	n := int(secs * fps)
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		if _, err := c.Write(frame); err != nil {
			return err
		}
	}
	return nil
}
