package source

import (
	"bytes"
	"context"
	"testing"
	"testing/iotest"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// TestConcatenatedTSKeepsEveryFrame: `cat a.ts b.ts` used to lose a's last
// picture and audio packet at the join (the demuxer discarded the payload
// being assembled when the continuity counter skipped). Every frame of
// both comes out, whatever the read sizes.
func TestConcatenatedTSKeepsEveryFrame(t *testing.T) {
	a, b := mediatest.ReadFixture(t, "cat-a.ts"), mediatest.ReadFixture(t, "cat-b.ts")
	wantV, wantA := 0, 0
	for _, name := range []string{"cat-a.ts", "cat-b.ts"} {
		var got collect
		if err := (&MPEGTS{R: bytes.NewReader(mediatest.ReadFixture(t, name))}).Run(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		wantV, wantA = wantV+got.count(1), wantA+got.count(2)
	}
	joined := append(append([]byte(nil), a...), b...)
	for name, r := range map[string]func() *bytes.Reader{"whole": func() *bytes.Reader { return bytes.NewReader(joined) }} {
		for _, rd := range []struct {
			name string
			wrap func(*bytes.Reader) any
		}{{"whole", func(r *bytes.Reader) any { return r }}, {"one byte", func(r *bytes.Reader) any { return iotest.OneByteReader(r) }},
			{"half", func(r *bytes.Reader) any { return iotest.HalfReader(r) }}} {
			var got collect
			src := &MPEGTS{R: rd.wrap(r()).(interface{ Read([]byte) (int, error) })}
			if err := src.Run(context.Background(), &got); err != nil {
				t.Fatal(err)
			}
			if got.count(1) != wantV || got.count(2) != wantA || wantV != 120 {
				t.Fatalf("%s %s: %d video, %d audio frames; the two files have %d and %d", name, rd.name, got.count(1), got.count(2), wantV, wantA)
			}
		}
	}
}
