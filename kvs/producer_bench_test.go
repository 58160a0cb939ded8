package kvs

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProducerPut: one op is one 4 kB frame (about 1 Mbit/s at 30
// fps) put into a Producer as fast as it takes them, and written to a
// loopback peer that demuxes and acknowledges each fragment (it must: the
// producer sends at most 2 fragments ahead of their BUFFERING). It reports
// the process CPU per frame: the producer's whole path, Matroska, buffer,
// connection, kernel, and the peer's demuxing, in the same process.
func BenchmarkProducerPut(b *testing.B) {
	peer := newFakeKVS(b)
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "bench"}, ControlPlane: peer,
		Credentials: testCreds(), Region: "us-east-1", BufferBytes: 1 << 40, BufferDuration: 1 << 50,
		MaxFragmentRate: 1000}, testTrack) // not the service's 5 a second: fragments here are 30 frames put at once
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := range 300 {
		_ = p.Put(stampedFrame(buf, i, len(buf)))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		if err := p.Put(stampedFrame(buf, 300+i, len(buf))); err != nil {
			b.Fatal(err)
		}
	}
	for p.Stats().BytesSent < int64(b.N)*int64(len(buf)) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
	p.cancel()
	<-p.done
}

// BenchmarkPutToPeerLatency: frames put one every 2 ms (a camera's pace,
// sped up) reach a loopback peer that demuxes them; it reports the delay
// from Put to the peer reading the frame, p50 and p99.
func BenchmarkPutToPeerLatency(b *testing.B) {
	srv := newFakeKVS(b)
	var mu sync.Mutex
	var delays []time.Duration
	got := 0
	all := make(chan struct{})
	target := 0
	srv.onFrame = func(data []byte) {
		d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(data))))
		mu.Lock()
		delays = append(delays, d)
		got++
		if got == target {
			close(all)
		}
		mu.Unlock()
	}
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "bench"}, ControlPlane: srv,
		Credentials: testCreds(), Region: "us-east-1", MaxFragmentRate: 1000}, testTrack) // fragments of 60 ms here

	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	// Warm up: connection, buffers.
	for i := range 60 {
		_ = p.Put(stampedFrame(buf, i, len(buf)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := got
		mu.Unlock()
		if n >= 60 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	delays, target = delays[:0], 60+b.N
	mu.Unlock()
	cpu0 := cpuTime()
	b.ResetTimer()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		if err := p.Put(stampedFrame(buf, 60+i, len(buf))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		b.Fatal("the peer did not receive every frame")
	}
	b.StopTimer()
	// Paced, so every frame is its own write: the CPU of a live camera
	// stream (this includes the peer's demuxing, in the same process).
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
	mu.Lock()
	slices.Sort(delays)
	if len(delays) > 0 {
		b.ReportMetric(float64(delays[len(delays)/2].Microseconds()), "p50-put-to-peer-µs")
		b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds()), "p99-put-to-peer-µs")
	}
	mu.Unlock()
	if _, err := p.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
}
