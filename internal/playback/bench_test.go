package playback

import (
	"context"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
)

// BenchmarkRemux measures what serving one fragment costs: parsing it and
// writing it as an fMP4 media segment (video track, as an HLS player asks)
// or an MPEG-TS segment (every track). The fragment is one second of
// 320x240 H.264 with B-frames plus AAC.
func BenchmarkRemux(b *testing.B) {
	src := encode(b, x264BPyramid, true)
	header, bodies := kvsFragments(b, src, epoch)
	body := bodies[1]
	p := Placement{BaseMS: epoch.UnixMilli(), FrameInterval: 33 * time.Millisecond}
	b.Run("fmp4", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			f, err := ParseFragment(header, body)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := MediaSegment(f, []uint64{1}, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mpegts", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			f, err := ParseFragment(header, body)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := TSSegment(f, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLiveEdge measures the time from a fragment being stored (the
// store's live notification) to a blocked LIVE playlist request returning
// it: the playlist side of live latency.
func BenchmarkLiveEdge(b *testing.B) {
	fs := newFakeStore(b)
	c := &clock{t: epoch.Add(time.Second)}
	fs.add(0, 1000, 1)
	m := newSessions(b, fs, c)
	sess, id := open(b, m, Session{Mode: ModeLive, MaxResults: 5, Discontinuity: DiscontinuityNever})
	ready := make(chan struct{})
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result)
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		msn := uint64(i + 1)
		go func() {
			close(ready)
			_, err := m.WaitWindow(context.Background(), sess, id, msn, time.Minute)
			done <- result{time.Now(), err}
		}()
		<-ready
		ready = make(chan struct{})
		// Let the waiter block on the store before the fragment arrives.
		for m.Source.(*fakeStore).waiters() == 0 {
			time.Sleep(10 * time.Microsecond)
		}
		stored := time.Now()
		fs.add(int64(i+1)*1000, 1000, 1)
		r := <-done
		if r.err != nil {
			b.Fatal(r.err)
		}
		total += r.at.Sub(stored)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/persisted-to-playlist")
}

// BenchmarkSessionLateInLongStream measures preparing an ON_DEMAND session
// of the last minute of a stream of 20 000 one-second fragments (5.5
// hours) in the real store: with PRODUCER_TIMESTAMP the producer-time
// index finds where the range starts; SERVER_TIMESTAMP ranges have no
// index and walk the stream from its beginning.
func BenchmarkSessionLateInLongStream(b *testing.B) {
	const n = 20_000
	st, err := store.Open(store.Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rec, err := st.CreateStream(store.NewStream{Name: "long", RetentionHours: 24})
	if err != nil {
		b.Fatal(err)
	}
	header, bodies := kvsFragments(b, encode(b, x264Baseline, false), epoch)
	start := time.Now().Add(-n * time.Second).UnixMilli()
	for i := range n {
		ms := start + int64(i)*1000
		if _, _, err := st.AppendFragment(rec.ID, store.NewFragment{Header: header, Body: bodies[0],
			ProducerMS: ms, ServerMS: ms, DurationMS: 1000}); err != nil {
			b.Fatal(err)
		}
	}
	signer, _ := NewSigner(make([]byte, 32))
	m := &Sessions{Source: st, Signer: signer}
	last := time.UnixMilli(start + (n-60)*1000)
	for _, producer := range []bool{true, false} {
		name := "server-time"
		if producer {
			name = "producer-time"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				sess := Session{Kind: KindHLS, Stream: rec.ID, Mode: ModeOnDemand, ProducerTime: producer,
					Start: last, End: last.Add(time.Minute), MaxResults: 1000, Discontinuity: DiscontinuityNever}
				if err := m.Prepare(&sess); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
