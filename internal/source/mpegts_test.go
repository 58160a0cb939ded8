package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// runTS sends an MPEG-TS input, paced, on a fake clock.
func runTS(t *testing.T, data []byte) (*collect, *fakeClock, string) {
	t.Helper()
	var logs syncBuffer
	clock := newFakeClock()
	src := &MPEGTS{R: bytes.NewReader(data), Pace: true, Now: clock.now, sleep: clock.sleep, Logger: slog.New(slog.NewTextHandler(&logs, debug))}
	var got collect
	if err := src.Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	return &got, clock, logs.String()
}

// TestMPEGTSConcatenated: `cat a.ts b.ts` (timestamps go back where the
// clips join) and a second clip 600 s later (they jump forward) are sent on
// in real time, every frame in order with the source's own timestamps, and
// the jump is reported once with its size.
func TestMPEGTSConcatenated(t *testing.T) {
	a, b, b600 := mediatest.ReadFixture(t, "clip-a.ts"), mediatest.ReadFixture(t, "clip-b.ts"), mediatest.ReadFixture(t, "clip-b-600.ts")
	alone := func(data []byte) *collect { got, _, _ := runTS(t, data); return got }
	ga, gb := alone(a), alone(b)
	for _, c := range []struct {
		name, second, jump string
	}{
		{"cat a.ts b.ts", string(b), "jump back"},
		{"b.ts 600 s later", string(b600), "jump forward"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, clock, logs := runTS(t, append(append([]byte{}, a...), c.second...))
			want := append(append([]frameKey{}, keys(ga)...), keys(gb)...)
			if g := keys(got); !equalKeys(g, want) {
				t.Fatalf("%d frames, want the %d of both clips in order", len(g), len(want))
			}
			// 2 s + 2 s of video at 30 fps: one frame's time between the clips.
			if total := clock.total(); total < 3900*time.Millisecond || total > 4*time.Second || clock.longest() > 40*time.Millisecond {
				t.Fatalf("slept %v in all, %v at most: not real time", total, clock.longest())
			}
			if strings.Count(logs, c.jump) != 1 {
				t.Fatalf("the discontinuity is not reported once:\n%s", logs)
			}
			// The timestamps are the source's: the second clip's go on from
			// its own start.
			var second time.Duration
			for _, f := range got.frames {
				if f.Track == 1 && f.Key {
					second = f.DTS
				}
			}
			if c.jump == "jump forward" && second < 600*time.Second || c.jump == "jump back" && second > 3*time.Second {
				t.Fatalf("the second clip's last key frame at %v", second)
			}
		})
	}
}

// frameKey identifies a frame by track and bytes.
type frameKey struct {
	track uint8
	data  string
}

func keys(c *collect) []frameKey {
	var k []frameKey
	for _, f := range c.frames {
		k = append(k, frameKey{f.Track, string(f.Data)})
	}
	return k
}

func equalKeys(a, b []frameKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMPEGTSReportsWhatItSkips: an input that starts mid-GOP loses the
// video before the first key frame, and says how many: what is sent and
// what is reported lost add up to the packets ffprobe finds. Its audio is
// all handed on, what came before the key frame just before it, in order:
// the producer keeps what belongs with the key frame by time.
func TestMPEGTSReportsWhatItSkips(t *testing.T) {
	a := mediatest.ReadFixture(t, "clip-a.ts")
	b := mediatest.ReadFixture(t, "cat-b.ts")
	for _, c := range []struct {
		name       string
		cut        []byte
		earlyAudio bool // audio comes before the first key frame
	}{
		// A third of the way in, on a packet boundary.
		{"clip-a.ts from a third", a[(len(a)/3)/188*188:], false},
		// At its 10th video frame: ffmpeg's muxer sends audio 0.7 s ahead
		// of the video, so audio comes before the key frame 20 frames on.
		{"cat-b.ts from frame 10", b[packetPositions(t, mediatest.Fixture(t, "cat-b.ts"))[10]/188*188:], true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cut.ts")
			if err := os.WriteFile(path, c.cut, 0o644); err != nil {
				t.Fatal(err)
			}
			streams := mediatest.Probe(t, path, nil, "")
			got, _, logs := runTS(t, c.cut)
			for i, s := range streams {
				n, _ := strconv.Atoi(s.NbReadFrames)
				track := uint8(i + 1)
				if got.count(track)+got.drops[track] != n {
					t.Fatalf("%s: %d frames sent and %d reported lost; ffprobe finds %d", s.CodecType, got.count(track), got.drops[track], n)
				}
			}
			var audio []time.Duration
			for _, f := range got.frames {
				if f.Track == 2 {
					audio = append(audio, f.PTS)
				}
			}
			if got.drops[2] != 0 || (got.frames[0].Track == 2) != c.earlyAudio || !slices.IsSorted(audio) {
				t.Fatalf("the audio before the first key frame is not all handed on, in order: %d reported lost, the first frame of track %d",
					got.drops[2], got.frames[0].Track)
			}
			first := slices.IndexFunc(got.frames, func(f media.Frame) bool { return f.Track == 1 })
			if got.drops[1] == 0 || got.why[LossBeforeKeyFrame] != got.drops[1] || !got.frames[first].Key || !strings.Contains(logs, "before the first key frame") {
				t.Fatalf("the frames before the first key frame are not reported: %v\n%s", got.drops, logs)
			}
		})
	}
}

// packetPositions returns the byte position of each video packet.
func packetPositions(t *testing.T, path string) []int {
	t.Helper()
	var pos []int
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pos", "-of", "csv=p=0", path)
	for l := range strings.FieldsSeq(string(out)) {
		v, err := strconv.Atoi(strings.TrimRight(l, ","))
		if err != nil {
			t.Fatalf("ffprobe position %q", l)
		}
		pos = append(pos, v)
	}
	return pos
}

// TestMPEGTSMissingPackets: a packet lost in the middle of a frame (the
// continuity counter skips) loses that frame, and it is reported; the
// other frames go on.
func TestMPEGTSMissingPackets(t *testing.T) {
	a := mediatest.ReadFixture(t, "clip-a.ts")
	whole, _, _ := runTS(t, a)
	// Drop the first video packet, halfway through, that continues a PES.
	var lossy []byte
	dropped := false
	for i := 0; i+188 <= len(a); i += 188 {
		pkt := a[i : i+188]
		pid := uint16(pkt[1]&0x1f)<<8 | uint16(pkt[2])
		if !dropped && i > len(a)/2 && pid == 256 && pkt[1]&0x40 == 0 {
			dropped = true
			continue
		}
		lossy = append(lossy, pkt...)
	}
	got, _, logs := runTS(t, lossy)
	if got.drops[1] != 1 || got.why[LossDamaged] != 1 || got.count(1) != whole.count(1)-1 || got.count(2) != whole.count(2) || !strings.Contains(logs, "packets are missing") {
		t.Fatalf("video %d of %d sent, %d reported lost; audio %d of %d; log:\n%s", got.count(1), whole.count(1), got.drops[1], got.count(2), whole.count(2), logs)
	}
}

// TestConcatenatedTSKeepsEveryFrame: `cat a.ts b.ts` used to lose a's last
// picture and audio packet at the join (the demuxer discarded the payload
// being assembled when the continuity counter skipped). Every frame of
// both comes out, whatever the read sizes, and nothing is reported lost.
func TestConcatenatedTSKeepsEveryFrame(t *testing.T) {
	a, b := mediatest.ReadFixture(t, "cat-a.ts"), mediatest.ReadFixture(t, "cat-b.ts")
	var want []frameKey
	for _, clip := range [][]byte{a, b} {
		var got collect
		if err := (&MPEGTS{R: bytes.NewReader(clip)}).Run(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		want = append(want, keys(&got)...)
	}
	joined := append(append([]byte(nil), a...), b...)
	for _, rd := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
	} {
		var got collect
		if err := (&MPEGTS{R: rd.wrap(bytes.NewReader(joined))}).Run(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		if g := keys(&got); len(want) < 120 || !equalKeys(g, want) || len(got.drops) != 0 {
			t.Fatalf("%s reads: %d frames (%d video), want the %d of both files in order; reported lost %v",
				rd.name, len(g), got.count(1), len(want), got.drops)
		}
	}
}

// TestTSJoinsReads: the join mender never returns 0 bytes without an
// error (callers would spin), passes an input that ends in a partial
// packet on as it is, and then the input's error.
func TestTSJoinsReads(t *testing.T) {
	a := mediatest.ReadFixture(t, "cat-a.ts")
	in := append(slices.Clone(a[:188*3]), a[188*3:188*3+100]...)
	j := newTSJoins(iotest.OneByteReader(bytes.NewReader(in)), nil, nil)
	var out []byte
	buf := make([]byte, 1000)
	for {
		n, err := j.Read(buf)
		if n == 0 && err == nil {
			t.Fatal("Read returned 0 bytes and no error")
		}
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("%d bytes out, %d in, or they differ", len(out), len(in))
	}
}
