// Package perf measures what kvsgo costs the machine it runs on, from
// outside the process, as the operating system accounts it: CPU time and
// peak memory from /proc and wait4, system calls from strace, latency
// percentiles, the machine and its load. The benchmark harness
// (scripts/bench) and the load test (scripts/loadtest) are built from it.
package perf
