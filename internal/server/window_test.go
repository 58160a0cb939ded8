package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// withSecondHeader repeats the stream's header before its seventh cluster.
func withSecondHeader(t *testing.T, body []byte) []byte {
	t.Helper()
	d := mkv.NewDemuxer(bytes.NewReader(body))
	var headerEnd int64
	var clusters []int64
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case mkv.EventHeader:
			headerEnd = ev.End
		case mkv.EventCluster:
			clusters = append(clusters, ev.Offset)
		}
	}
	cut := clusters[6]
	out := append([]byte(nil), body[:cut]...)
	out = append(out, body[:headerEnd]...)
	return append(out, body[cut:]...)
}

// ingestStored runs a PutMedia body through a session reading it in pieces
// of the given sizes through a window of the given size, and returns what
// the store then holds: each fragment's header and body, and the acks.
func ingestStored(t *testing.T, body []byte, window int, sizes []int) (frags [][2][]byte, acks []kvs.Ack) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stream, err := st.CreateStream(store.NewStream{Name: "split", RetentionHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, Logger: slog.New(slog.DiscardHandler), IngestBuffer: window})
	in := newIngest(s, stream, false, 0, true, s.log)
	if reason := in.run(&bodyReader{r: &splitReader{data: body, sizes: sizes}, in: in}); reason != reasonEnd {
		t.Fatalf("window %d: the session ended with %q", window, reason)
	}
	acks, _ = in.acks.take(nil)
	err = st.Scan(stream.ID, 0, func(f store.Fragment) bool {
		h, b, err := st.ReadFragment(stream.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		frags = append(frags, [2][]byte{h, b})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return frags, acks
}

// TestIngestAnySplit: however the network splits a PutMedia body, and
// whatever the size of the session's window, the store ends up with the
// same fragments, byte for byte, as when the body arrives whole: the
// window writes a fragment through as it fills without losing or
// repeating a byte at its edges.
func TestIngestAnySplit(t *testing.T) {
	var bodies [][]byte
	for _, p := range []string{"../../../shared/reference/kvssink-capture/04_putMedia.body", "../../testdata/h264-aac.mkv"} {
		b, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	// The capture again with a second EBML header in the middle, as when a
	// producer starts a new stream (new codec settings) on the connection.
	bodies = append(bodies, withSecondHeader(t, bodies[0]))
	rng := rand.New(rand.NewPCG(1, 2))
	for bi, body := range bodies {
		want, wantAcks := ingestStored(t, body, 8<<20, nil)
		if len(want) < 3 {
			t.Fatalf("body %d: %d fragments", bi, len(want))
		}
		for _, c := range []struct {
			window int
			split  func() int
		}{
			// A window barely larger than one read: it makes room before
			// nearly every read, at every possible edge.
			{minRead + 1, func() int { return 1 }},
			{minRead + 64, func() int { return 1 + rng.IntN(13) }},
			{minRead + 1, func() int { return 1 + rng.IntN(300) }},
			{8 << 10, func() int { return 1 }},
			{8 << 10, func() int { return 1 + rng.IntN(13) }},
			{16 << 10, func() int { return 1 + rng.IntN(9000) }},
			{32 << 10, func() int { return 4096 }},
			{64 << 10, func() int { return 1 + rng.IntN(70000) }},
		} {
			sizes := make([]int, 0, len(body))
			for total := 0; total < len(body); {
				n := c.split()
				sizes = append(sizes, n)
				total += n
			}
			name := fmt.Sprintf("body %d, window %d, %d reads", bi, c.window, len(sizes))
			got, gotAcks := ingestStored(t, body, c.window, sizes)
			if len(got) != len(want) || len(gotAcks) != len(wantAcks) {
				t.Fatalf("%s: %d fragments and %d acks, want %d and %d", name, len(got), len(gotAcks), len(want), len(wantAcks))
			}
			for i := range want {
				if !bytes.Equal(got[i][0], want[i][0]) || !bytes.Equal(got[i][1], want[i][1]) {
					t.Fatalf("%s: fragment %d differs (%d/%d bytes, want %d/%d)", name, i, len(got[i][0]), len(got[i][1]), len(want[i][0]), len(want[i][1]))
				}
			}
		}
	}
}
