package kvs

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// frameLog collects the frames a fake server received, in order.
type frameLog struct {
	mu     sync.Mutex
	frames []string
}

func (l *frameLog) add(b []byte) {
	l.mu.Lock()
	l.frames = append(l.frames, string(b))
	l.mu.Unlock()
}

func (l *frameLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.frames)
}

// named is frame n of a 30 fps stream with a key frame a second, its data
// saying which run and frame it is.
func named(run string, n int) media.Frame {
	ts := time.Duration(n) * time.Second / 30
	return media.Frame{Track: 1, PTS: ts, DTS: ts, Key: n%30 == 0, Data: []byte(fmt.Sprintf("%s-%04d", run, n))}
}

func names(run string, from, to int) []string {
	var out []string
	for n := from; n < to; n++ {
		out = append(out, fmt.Sprintf("%s-%04d", run, n))
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill stops a producer as kill -9 would: no flush, no Close.
func kill(p *Producer) {
	p.cancel()
	<-p.done
}

func fragFiles(fs *faultFS) []string {
	var out []string
	for _, n := range fs.names() {
		if strings.HasSuffix(n, fragExt) {
			out = append(out, n)
		}
	}
	return out
}

// TestStaleWhenOneFragmentLosesItsAcks: the acks of one fragment are lost
// while later fragments are acknowledged. Each fragment has its own
// deadline, so the connection is stale, and a new one sends it again: all
// is persisted and Close returns. (When any ack cleared the stale timer,
// that fragment was never sent again and Close timed out.)
func TestStaleWhenOneFragmentLosesItsAcks(t *testing.T) {
	srv := newFakeKVS(t)
	srv.dropAcks = func(session, cluster int) bool { return session == 1 && cluster == 2 }
	got := &frameLog{}
	srv.onFrame = got.add
	p, log := newTestProducer(t, srv, ProducerConfig{AckTimeout: 300 * time.Millisecond, CloseTimeout: 3 * time.Second})
	for n := range 30 * 4 {
		if err := p.Put(named("a", n)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	st, err := p.Close(context.Background())
	if err != nil {
		t.Fatalf("Close: %v (%+v)", err, st)
	}
	if srv.sessionCount() < 2 || st.Persisted < 4 {
		t.Fatalf("%d sessions, %d persisted", srv.sessionCount(), st.Persisted)
	}
	if msgs := strings.Join(log.messages(EventDisconnected), "\n"); !strings.Contains(msgs, "no acknowledgement for 300ms after sending a fragment") {
		t.Fatalf("the stale connection was not reported: %s", msgs)
	}
}

// TestBacklogGoesFirstThenLiveVideo: a producer with a disk buffer is
// killed while the service cannot be reached; the next one, on the same
// directory, sends the whole fragments it left (oldest first, behind their
// own header) and then the new video, on the same connections, with
// timecodes that never go backwards (no 4004), every frame once; the torn
// fragment is reported; the files are deleted once persisted.
func TestBacklogGoesFirstThenLiveVideo(t *testing.T) {
	fs := newFaultFS(1)
	srv := newFakeKVS(t)
	srv.setDown(true)
	got := &frameLog{}
	srv.onFrame = got.add
	buf, _ := openTestBuffer(t, fs, "s")
	p, _ := newTestProducer(t, srv, ProducerConfig{Buffer: buf})
	for n := range 30*4 + 10 { // four whole fragments and a third of one
		if err := p.Put(named("one", n)); err != nil {
			t.Fatal(err)
		}
	}
	kill(p)
	fs.kill()

	srv.setDown(false)
	buf2, rec := openTestBuffer(t, fs, "s")
	if rec.Fragments != 4 || rec.Frames != 120 || len(rec.Torn) != 1 || rec.Torn[0].Frames != 10 {
		t.Fatalf("recovery %+v", rec)
	}
	log := &eventLog{}
	p2, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv, Credentials: testCreds(),
		Region: "us-east-1", OnEvent: log.add, Buffer: buf2, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The backlog goes out before the source has said what it sends.
	waitFor(t, "the backlog", func() bool { return len(got.all()) >= 90 })
	if err := p2.SetTracks(testTrack); err != nil {
		t.Fatal(err)
	}
	for n := range 30 * 3 {
		if err := p2.Put(named("two", n)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	st, err := p2.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf2.Close()
	want := append(names("one", 0, 120), names("two", 0, 90)...)
	if frames := got.all(); !slices.Equal(frames, want) {
		t.Fatalf("the service got %d frames: %v...; want the backlog's 120 then the new 90, once each", len(frames), frames[:min(len(frames), 5)])
	}
	srv.mu.Lock()
	backwards := srv.backwards
	srv.mu.Unlock()
	if backwards != 0 {
		t.Fatalf("%d fragments went backwards on a connection (4004)", backwards)
	}
	if st.Recovered != 4 || st.RecoveredFrames != 120 || st.Lost.Total() != 0 || st.Frames != 90 {
		t.Fatalf("stats %+v", st)
	}
	if f := fragFiles(fs); len(f) != 0 {
		t.Fatalf("files left after everything was persisted: %v", f)
	}
}

// TestFilesStayUntilPersisted: acknowledged RECEIVED but never PERSISTED,
// the fragments stay on disk, and the next run finds them all.
func TestFilesStayUntilPersisted(t *testing.T) {
	fs := newFaultFS(1)
	srv := newFakeKVS(t)
	srv.noPersist = true
	buf, _ := openTestBuffer(t, fs, "s")
	p, _ := newTestProducer(t, srv, ProducerConfig{Buffer: buf, CloseTimeout: 500 * time.Millisecond, AckTimeout: time.Hour})
	for n := range 30 * 3 {
		_ = p.Put(named("a", n))
	}
	waitFor(t, "RECEIVED acks", func() bool { return p.Stats().Received >= 2 })
	if _, err := p.Close(context.Background()); err == nil {
		t.Fatal("Close without PERSISTED succeeded")
	}
	buf.Close()
	if f := fragFiles(fs); len(f) != 3 {
		t.Fatalf("fragment files on disk: %v; want all 3", f)
	}
	_, rec := openTestBuffer(t, fs, "s")
	if rec.Fragments != 3 || rec.Frames != 90 {
		t.Fatalf("the next run found %+v", rec)
	}
}

// TestFragmentRateWhileCatchingUp: a backlog goes out within the service's
// limits: never more than 5 fragments in a second, and no faster than the
// bandwidth allows.
func TestFragmentRateWhileCatchingUp(t *testing.T) {
	t.Run("fragments", func(t *testing.T) {
		srv := newFakeKVS(t)
		srv.setDown(true)
		p, _ := newTestProducer(t, srv, ProducerConfig{})
		for n := range 30*15 + 1 {
			_ = p.Put(named("a", n))
		}
		srv.setDown(false)
		if _, err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		arrivals := slices.Clone(srv.clusters)
		srv.mu.Unlock()
		if len(arrivals) < 16 {
			t.Fatalf("%d fragments arrived", len(arrivals))
		}
		for i := 5; i < len(arrivals); i++ {
			if d := arrivals[i].at.Sub(arrivals[i-5].at); d < time.Second {
				t.Fatalf("fragments %d to %d arrived within %s: more than 5 a second", i-5, i, d)
			}
		}
	})
	t.Run("bandwidth", func(t *testing.T) {
		srv := newFakeKVS(t)
		srv.setDown(true)
		p, _ := newTestProducer(t, srv, ProducerConfig{MaxBytesPerSecond: 100_000})
		big := make([]byte, 2000)
		for n := range 30*5 + 1 {
			f := named("a", n)
			f.Data = append(big[:0:0], f.Data...)
			f.Data = append(f.Data, big...)
			_ = p.Put(f)
		}
		_, size := p.buf.Size()
		srv.setDown(false)
		start := time.Now()
		if _, err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A second's worth may go at once; the rest at the rate.
		if min := time.Duration(float64(size-100_000) / 100_000 * float64(time.Second)); time.Since(start) < min {
			t.Fatalf("%d bytes went out in %s: faster than 100 kB/s", size, time.Since(start))
		}
	})
}

// TestEvictionBySizeAndAge: past --buffer-size or --buffer-age the oldest
// whole fragments go, each reported (event, counts, frames lost), their
// files deleted; a backlog older than the age limit is evicted when the
// next run starts.
func TestEvictionBySizeAndAge(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   ProducerConfig
		limit string
	}{
		{"size", ProducerConfig{BufferBytes: 2500}, "the limits are 0 MB"},
		{"age", ProducerConfig{BufferDuration: 3 * time.Second}, "and 3s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := newFaultFS(1)
			srv := newFakeKVS(t)
			srv.setDown(true)
			buf, _ := openTestBuffer(t, fs, "s")
			cfg := c.cfg
			cfg.Buffer = buf
			p, log := newTestProducer(t, srv, cfg)
			for n := range 30*8 + 1 { // 8 fragments of 30 frames of 9 bytes
				_ = p.Put(named("a", n))
			}
			st := p.Stats()
			dropped := log.messages(EventDropped)
			if st.DroppedFragments < 4 || int64(len(dropped)) != st.DroppedFragments || st.Lost.Overflow != 30*st.DroppedFragments {
				t.Fatalf("dropped %d fragments (%d frames), %d reported", st.DroppedFragments, st.Lost.Overflow, len(dropped))
			}
			if !strings.Contains(dropped[0], "dropped the oldest fragment") || !strings.Contains(dropped[0], c.limit) || !strings.Contains(dropped[0], "30 frames") {
				t.Fatalf("report: %s", dropped[0])
			}
			if n, _ := buf.Size(); len(fragFiles(fs)) != n-1 { // the newest is still being written
				t.Fatalf("%d files for %d fragments", len(fragFiles(fs)), n)
			}
			kill(p)
			fs.kill()
			// The next run, with a shorter age limit, evicts the backlog's
			// oldest at once.
			buf2, rec := openTestBuffer(t, fs, "s")
			log2 := &eventLog{}
			p2, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv, Credentials: testCreds(),
				Region: "us-east-1", OnEvent: log2.add, Buffer: buf2, BufferDuration: time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer kill(p2)
			if rec.Fragments < 3 {
				t.Fatalf("a backlog of %d fragments is too short for the test", rec.Fragments)
			}
			if st := p2.Stats(); st.DroppedFragments != int64(rec.Fragments-2) || len(log2.messages(EventDropped)) != rec.Fragments-2 {
				t.Fatalf("backlog of %d: %d evicted at start, %d reported", rec.Fragments, st.DroppedFragments, len(log2.messages(EventDropped)))
			}
		})
	}
}

// TestDamagedFragmentIsSkipped: a buffered fragment whose file the disk
// changed is not sent; it is reported and counted, the others go.
func TestDamagedFragmentIsSkipped(t *testing.T) {
	fs := newFaultFS(1)
	srv := newFakeKVS(t)
	srv.setDown(true)
	got := &frameLog{}
	srv.onFrame = got.add
	buf, _ := openTestBuffer(t, fs, "s")
	p, _ := newTestProducer(t, srv, ProducerConfig{Buffer: buf})
	for n := range 30*3 + 1 {
		_ = p.Put(named("a", n))
	}
	kill(p)
	fs.kill()
	n := fs.visible[filepath.Join("/buf/s", "0000000000000001.frag")]
	n.data[len(n.data)/2] ^= 0xff
	srv.setDown(false)
	buf2, _ := openTestBuffer(t, fs, "s")
	log := &eventLog{}
	p2, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv, Credentials: testCreds(),
		Region: "us-east-1", OnEvent: log.add, Buffer: buf2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p2.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := append(names("a", 0, 30), names("a", 60, 90)...); !slices.Equal(got.all(), want) {
		t.Fatalf("got %d frames, want the first and third fragments'", len(got.all()))
	}
	if st.Lost.Torn != 30 || !strings.Contains(strings.Join(log.messages(EventDropped), "\n"), "checksum") {
		t.Fatalf("losses %+v, events %v", st.Lost, log.messages(EventDropped))
	}
}
