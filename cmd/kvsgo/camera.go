//go:build camera

package main

import "errors"

// The camera build (go build -tags camera) has put, run and get: what a
// device that only sends video runs. It leaves out serve and demo, and with
// them the server's dependencies (WebRTC, HLS and MP4 muxers, the index
// database): a third of the binary, a third of the package initialisation,
// and about 3 MiB of a put's memory (docs/BENCHMARKS.md).

// errCameraBuild says where serve and demo are.
var errCameraBuild = errors.New("this kvsgo is the camera build (put, run and get only); serve and demo are in the full kvsgo, from the same release")

const (
	serveSummary = "not in this camera build: the full kvsgo has the local server"
	demoSummary  = "not in this camera build: the full kvsgo has the demo"
)

func runServe(*cliEnv, []string) error { return errCameraBuild }

func runDemo(*cliEnv, []string) error { return errCameraBuild }
