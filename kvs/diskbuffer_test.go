package kvs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// written is a fragment as the test gave it to the buffer.
type written struct {
	tc     int64
	header []byte
	data   []byte
	frames int
}

func openTestBuffer(t *testing.T, fs fileSystem, stream string) (*DiskBuffer, Recovery) {
	t.Helper()
	b, rec, err := OpenDiskBuffer(DiskBufferConfig{Dir: "/buf", Stream: stream, MemoryBytes: 4 << 10, fs: fs})
	if err != nil {
		t.Fatal(err)
	}
	return b, rec
}

// readBack reads every fragment the buffer holds, oldest first.
func readBack(t *testing.T, b *DiskBuffer) []written {
	t.Helper()
	var out []written
	for f := b.First(); f != nil; f = b.Get(f.ID + 1) {
		var data []byte
		for off := 0; off < f.Size; {
			p, err := b.Read(f, off)
			if err != nil {
				t.Fatalf("reading fragment %d: %v", f.Timecode, err)
			}
			data = append(data, p...)
			off += len(p)
		}
		out = append(out, written{f.Timecode, f.Header, data, f.Frames})
	}
	return out
}

func sameFragments(t *testing.T, got, want []written) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d fragments back, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.tc != w.tc || !bytes.Equal(g.header, w.header) || !bytes.Equal(g.data, w.data) || g.frames != w.frames {
			t.Fatalf("fragment %d: got tc %d, %d bytes, %d frames; want tc %d, %d bytes, %d frames", i, g.tc, len(g.data), g.frames, w.tc, len(w.data), w.frames)
		}
	}
}

// TestDiskBufferSurvivesPowerCuts writes fragments, releases some as the
// service would persist them, and cuts the power at a random point, many
// times: what comes back is exactly the fragments that were complete and
// not released, byte for byte, and the fragment being written is reported
// torn, never returned. Without the sync of each file, or of the directory
// after its rename, whole fragments are lost or come back torn.
func TestDiskBufferSurvivesPowerCuts(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		fs := newFaultFS(seed)
		b, _ := openTestBuffer(t, fs, "cam")
		headers := [][]byte{[]byte("header-one"), []byte("header-two")}
		var complete []written // complete and not released
		var cur *written
		tc := int64(1_700_000_000_000)
		steps := rng.IntN(40) + 1
		for range steps {
			switch r := rng.IntN(10); {
			case r < 2 || cur == nil: // a new fragment
				if cur != nil {
					complete = append(complete, *cur)
				}
				tc += int64(rng.IntN(2000) + 1)
				h := headers[rng.IntN(2)]
				f := b.Start(tc, h)
				cur = &written{tc: tc, header: h}
				f.Frames = 0
			case r < 8: // a frame
				p := make([]byte, rng.IntN(3000)+1)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				b.Append(p)
				b.Last().Frames++
				cur.data = append(cur.data, p...)
				cur.frames++
			default: // the service persisted the oldest
				if len(complete) > 0 {
					n := b.Release(func(f *Fragment) bool { return f.Complete && f.Timecode == complete[0].tc }, 0)
					if n != 1 {
						t.Fatalf("seed %d: released %d", seed, n)
					}
					complete = complete[1:]
				}
			}
		}
		fs.crash()
		b2, rec := openTestBuffer(t, fs, "cam")
		got := readBack(t, b2)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { sameFragments(t, got, complete) })
		if rec.Fragments != len(complete) {
			t.Fatalf("seed %d: recovery says %d fragments, %d were complete", seed, rec.Fragments, len(complete))
		}
		for _, n := range fs.names() {
			if strings.HasSuffix(n, partExt) {
				t.Fatalf("seed %d: torn file %s left behind", seed, n)
			}
		}
		b2.Close()
	}
}

// TestDiskBufferAfterKill: a kill -9 leaves the files as written; the
// fragment being written is torn (reported, with its frames, and
// deleted), the others come back.
func TestDiskBufferAfterKill(t *testing.T) {
	fs := newFaultFS(1)
	b, _ := openTestBuffer(t, fs, "cam")
	header, clusters := fixtureFragmentBytes(t, 4)
	var want []written
	for i, c := range clusters {
		f := b.Start(int64(1000*(i+1)), header)
		b.Append(c.data)
		f.Frames = c.frames
		if i < len(clusters)-1 {
			want = append(want, written{int64(1000 * (i + 1)), header, c.data, c.frames})
		}
	}
	fs.kill() // the last fragment is being written
	b2, rec := openTestBuffer(t, fs, "cam")
	sameFragments(t, readBack(t, b2), want)
	if len(rec.Torn) != 1 || rec.Torn[0].Frames != clusters[len(clusters)-1].frames || !strings.Contains(rec.Torn[0].Why, "stopped while writing") {
		t.Fatalf("torn files %+v; want the last one, with its %d frames", rec.Torn, clusters[len(clusters)-1].frames)
	}
	if rec.TornFrames() != int64(clusters[len(clusters)-1].frames) {
		t.Fatalf("TornFrames %d", rec.TornFrames())
	}
}

// TestDiskBufferDamagedFile: a whole file the disk changed is not sent:
// the newest is checked when the buffer opens, the others when read.
func TestDiskBufferDamagedFile(t *testing.T) {
	fs := newFaultFS(1)
	b, _ := openTestBuffer(t, fs, "cam")
	for i := range 3 {
		b.Start(int64(1000*(i+1)), []byte("h"))
		b.Append(bytes.Repeat([]byte{byte(i)}, 10000))
	}
	b.End()
	b.Close()
	for _, name := range []string{"0000000000000001.frag", "0000000000000002.frag"} {
		n := fs.visible[filepath.Join("/buf/cam", name)]
		n.data[5000] ^= 0xff
	}
	b2, rec := openTestBuffer(t, fs, "cam")
	if rec.Fragments != 2 || len(rec.Torn) != 1 || !strings.Contains(rec.Torn[0].Why, "checksum") {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := b2.Read(b2.First(), 0); err != nil {
		t.Fatalf("the first fragment: %v", err)
	}
	if _, err := b2.Read(b2.Get(b2.First().ID+1), 0); err == nil || !errors.Is(err, errTorn) {
		t.Fatalf("the damaged middle fragment read back: %v", err)
	}
}

// TestDiskBufferLock: one process per stream and buffer directory; other
// streams are independent, and the lock goes with Close (and with the
// process: the kernel drops flock locks).
func TestDiskBufferLock(t *testing.T) {
	dir := t.TempDir()
	open := func(stream string) (*DiskBuffer, error) {
		b, _, err := OpenDiskBuffer(DiskBufferConfig{Dir: dir, Stream: stream})
		return b, err
	}
	a, err := open("cam")
	if err != nil {
		t.Fatal(err)
	}
	_, err = open("cam")
	if !errors.Is(err, ErrBufferInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) ||
		!strings.Contains(err.Error(), "one process per stream") {
		t.Fatalf("second open: %v", err)
	}
	other, err := open("porch")
	if err != nil {
		t.Fatalf("another stream: %v", err)
	}
	other.Close()
	a.Close()
	again, err := open("cam")
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// TestDiskBufferMemoryBounded: only the newest fragments stay in memory;
// the rest are read back from disk, intact.
func TestDiskBufferMemoryBounded(t *testing.T) {
	fs := newFaultFS(1)
	b, _, err := OpenDiskBuffer(DiskBufferConfig{Dir: "/buf", Stream: "cam", MemoryBytes: 1 << 20, fs: fs})
	if err != nil {
		t.Fatal(err)
	}
	var want []written
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i)}, 100_000)
		b.Start(int64(i+1), []byte("h"))
		b.Append(p)
		want = append(want, written{int64(i + 1), []byte("h"), p, 0})
		if b.memBytes > 1<<20+100_000 {
			t.Fatalf("after %d fragments, %d bytes in memory", i+1, b.memBytes)
		}
	}
	b.End()
	sameFragments(t, readBack(t, b), want)
	if n, size := b.Size(); n != 200 || size != 200*100_000 {
		t.Fatalf("Size %d %d", n, size)
	}
}

// TestDiskBufferFullDisk: when the disk cannot be written, fragments are
// kept in memory (and said so, once), up to MemoryLimit; writing resumes
// when the disk can take it (said so), and what was on disk survives.
func TestDiskBufferFullDisk(t *testing.T) {
	fs := newFaultFS(1)
	var problems []string
	b, _, err := OpenDiskBuffer(DiskBufferConfig{Dir: "/buf", Stream: "cam", MemoryBytes: 1, MemoryLimit: 250_000, fs: fs,
		OnProblem: func(m string) { problems = append(problems, m) }})
	if err != nil {
		t.Fatal(err)
	}
	frag := func(i int) {
		b.Start(int64(i+1), []byte("h"))
		b.Append(bytes.Repeat([]byte{byte(i)}, 100_000))
	}
	frag(0)
	b.End()
	fs.setFull(true)
	for i := 1; i <= 3; i++ {
		frag(i)
		if b.overMemory() != (i == 3) {
			t.Fatalf("after %d fragments in memory only, overMemory %v", i, b.overMemory())
		}
	}
	fs.setFull(false)
	frag(4)
	frag(5)
	b.End()
	if len(problems) != 2 || !strings.Contains(problems[0], "cannot write the buffer") || !strings.Contains(problems[0], "no space left") ||
		!strings.Contains(problems[1], "can be written again") {
		t.Fatalf("problems reported: %q", problems)
	}
	got := readBack(t, b)
	if len(got) != 6 {
		t.Fatalf("%d fragments", len(got))
	}
	for b.First() != nil && b.First().memOnly || b.First() != nil && b.First().Timecode == 1 {
		b.DropOldest()
	}
	if b.overMemory() {
		t.Fatal("still over memory after dropping what was in memory only")
	}
	fs.crash()
	b2, rec := openTestBuffer(t, fs, "cam")
	if rec.Fragments != 2 || b2.First().Timecode != 5 {
		t.Fatalf("after a crash: %+v", rec)
	}
}

type testCluster struct {
	data   []byte
	frames int
}

// fixtureFragmentBytes makes n fragments of real Matroska (a second of
// 30 fps video each) and their header, with the producer's frame path.
func fixtureFragmentBytes(t *testing.T, n int) ([]byte, []testCluster) {
	t.Helper()
	tp := newTestPath(t, videoTrack)
	for i := range 30*n + 1 {
		ts := time.Duration(i) * time.Second / 30
		tp.frame(t, 1, ts, ts, i%30 == 0, fmt.Sprintf("frame %d", i))
	}
	var out []testCluster
	for _, f := range tp.rec.frags[:n] {
		out = append(out, testCluster{f.data, f.frames})
	}
	return tp.rec.frags[0].header, out
}
