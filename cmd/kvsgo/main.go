// Command kvsgo streams camera video to Amazon Kinesis Video Streams.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
