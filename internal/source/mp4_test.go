package source

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/media"
)

// shownPacket is a packet as a player reads it: its times on the
// presentation timeline and whether the player shows it.
type shownPacket struct {
	video    bool
	key      bool
	shown    bool
	pts, dts time.Duration
	size     int
	md5      string // "" when the oracle does not give it
}

func parseSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return time.Duration(f * float64(time.Second))
}

// ffprobePackets reads an MP4 as ffmpeg does: packets its edit lists hide
// carry the discard flag.
func ffprobePackets(t *testing.T, path string) []shownPacket {
	t.Helper()
	out := mediatest.Run(t, nil, "ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts_time,dts_time,size,flags,data_hash",
		"-show_data_hash", "MD5", "-of", "json", path)
	var res struct {
		Packets []struct {
			Stream int    `json:"stream_index"`
			PTS    string `json:"pts_time"`
			DTS    string `json:"dts_time"`
			Size   string `json:"size"`
			Flags  string `json:"flags"`
			Hash   string `json:"data_hash"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	streams := mediatest.Probe(t, path, nil, "")
	var pkts []shownPacket
	for _, p := range res.Packets {
		size, _ := strconv.Atoi(p.Size)
		pkts = append(pkts, shownPacket{video: streams[p.Stream].CodecType == "video", key: strings.Contains(p.Flags, "K"),
			shown: !strings.Contains(p.Flags, "D"), pts: parseSeconds(t, p.PTS), dts: parseSeconds(t, p.DTS), size: size,
			md5: strings.TrimPrefix(p.Hash, "MD5:")})
	}
	return pkts
}

var (
	gstSegment = regexp.MustCompile(`do_push_event_pre:<d:(video|audio)_0>.*GstEventSegment.*start=\(guint64\)(\d+),`)
	gstBuffer  = regexp.MustCompile(`do_push_buffer_pre:<d:(video|audio)_0>.*, pts ([\d:.]+), dts ([\d:.]+|none), dur ([\d:.]+), size (\d+), .*flags (0x[0-9a-f]+)`)
)

func gstClock(t *testing.T, s string) time.Duration {
	t.Helper()
	var h, m int
	var sec float64
	if _, err := fmt.Sscanf(s, "%d:%d:%f", &h, &m, &sec); err != nil {
		t.Fatalf("GStreamer time %q: %v", s, err)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(math.Round(sec*1e9))
}

// gstPackets reads an MP4 as GStreamer's qtdemux does (every buffer it
// pushes, from its log tracer): it applies the edit list as a segment, and
// players show a buffer from the segment's start on, at its running time
// (pts - start).
func gstPackets(t *testing.T, path string) []shownPacket {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "gst.log")
	cmd := exec.Command(mediatest.Tool(t, "gst-launch-1.0"), "-q", "filesrc", "location="+path, "!", "qtdemux", "name=d",
		"d.video_0", "!", "queue", "!", "fakesink", "sync=false", "d.audio_0", "!", "queue", "!", "fakesink", "sync=false")
	cmd.Env = append(os.Environ(), "GST_TRACERS=log", "GST_DEBUG=GST_BUFFER:7,GST_EVENT:7", "GST_DEBUG_NO_COLOR=1", "GST_DEBUG_FILE="+logFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gst-launch-1.0: %v %s", err, out)
	}
	out, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	start := map[string]time.Duration{}
	var pkts []shownPacket
	for line := range strings.SplitSeq(string(out), "\n") {
		if m := gstSegment.FindStringSubmatch(line); m != nil {
			ns, _ := strconv.ParseInt(m[2], 10, 64)
			start[m[1]] = time.Duration(ns)
			continue
		}
		m := gstBuffer.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		size, _ := strconv.Atoi(m[5])
		flags, _ := strconv.ParseUint(m[6], 0, 32)
		pts, dur := gstClock(t, m[2]), gstClock(t, m[4])
		dts := pts
		if m[3] != "none" {
			dts = gstClock(t, m[3])
		}
		s := start[m[1]]
		p := shownPacket{video: m[1] == "video", key: flags&0x2000 == 0, pts: pts - s, dts: dts - s, size: size} // 0x2000: delta unit
		p.shown = p.pts >= 0 || (!p.video && p.pts+dur > 0)
		pkts = append(pkts, p)
	}
	if len(pkts) == 0 {
		t.Fatalf("no buffers in GStreamer's log")
	}
	return pkts
}

// wantFromPlayer is what kvsgo must send of what a player shows: video
// from the first key frame it shows on (the frames shown before it need
// hidden ones to decode), and all the audio it plays (the producer puts the
// audio before that key frame at the start of the first fragment). lost
// counts the video frames shown before that key frame.
func wantFromPlayer(pkts []shownPacket) (video, audio []shownPacket, lost int) {
	var first *shownPacket
	for i, p := range pkts {
		if p.video && p.shown && p.key {
			first = &pkts[i]
			break
		}
	}
	for _, p := range pkts {
		switch {
		case !p.shown:
		case p.video && p.pts >= first.pts:
			video = append(video, p)
		case p.video:
			lost++
		default:
			audio = append(audio, p)
		}
	}
	return video, audio, lost
}

func near(a, b time.Duration) bool { return (a - b).Abs() <= 2*time.Microsecond }

// compareWithPlayer checks kvsgo's frames against a player's view: the same
// packets, bytes and times relative to the first video frame.
// With prefix, the oracle may stop early: GStreamer 1.22's qtdemux ends
// the cut files at their last key frame.
func compareWithPlayer(t *testing.T, oracle string, got *collect, pkts []shownPacket, prefix bool) {
	t.Helper()
	video, audio, lost := wantFromPlayer(pkts)
	var gv, ga []media.Frame
	for _, f := range got.frames {
		if f.Track == 1 {
			gv = append(gv, f)
		} else {
			ga = append(ga, f)
		}
	}
	if prefix && len(video) > 1 && len(audio) > 1 && len(gv) >= len(video) && len(ga) >= len(audio) {
		gv, ga = gv[:len(video)], ga[:len(audio)]
	}
	if len(gv) != len(video) || len(ga) != len(audio) || got.drops[1] != lost {
		t.Fatalf("%s: %d video and %d audio frames sent, %d video reported lost; the player shows %d and %d from the first key frame on, and %d before it",
			oracle, len(gv), len(ga), got.drops[1], len(video), len(audio), lost)
	}
	v0, w0 := gv[0].PTS, video[0].pts
	check := func(kind string, i int, f media.Frame, p shownPacket) {
		t.Helper()
		if !near(f.PTS-v0, p.pts-w0) || (p.video && !near(f.DTS-v0, p.dts-w0)) || f.Key != p.key || len(f.Data) != p.size {
			t.Fatalf("%s: %s frame %d: pts %v dts %v key %v %d bytes (relative to the first video frame); the player: pts %v dts %v key %v %d bytes",
				oracle, kind, i, f.PTS-v0, f.DTS-v0, f.Key, len(f.Data), p.pts-w0, p.dts-w0, p.key, p.size)
		}
		if sum := md5.Sum(f.Data); p.md5 != "" && hex.EncodeToString(sum[:]) != p.md5 {
			t.Fatalf("%s: %s frame %d: its bytes differ from the file's", oracle, kind, i)
		}
	}
	for i := range gv {
		check("video", i, gv[i], video[i])
	}
	for i := range ga {
		check("audio", i, ga[i], audio[i])
	}
}

// TestMP4EditListsAsPlayersShow: an MP4 is sent as ffmpeg and GStreamer
// show it: nothing its edit lists hide (AAC priming, the pre-roll before
// an `ffmpeg -ss 1.5 -c copy` cut, with and without B-frames), every frame
// at the time they give it relative to the first video frame, byte for
// byte; and the frames shown between the cut and the next key frame, which
// cannot be decoded without the hidden pre-roll, are reported lost.
func TestMP4EditListsAsPlayersShow(t *testing.T) {
	for _, c := range []struct {
		fixture   string
		lost      int // shown frames before the first key frame shown
		hiddenPre bool
	}{
		{"h264-aac.mp4", 0, false},
		{"cut-h264-aac.mp4", 5, true},
		{"cut-bframes-aac.mp4", 5, true},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			path := mediatest.Fixture(t, c.fixture)
			src, closer, err := Open(path, Options{Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			var logs syncBuffer
			src.(*MP4).Logger = slog.New(slog.NewTextHandler(&logs, nil))
			var got collect
			if err := src.Run(context.Background(), &got); err != nil {
				t.Fatal(err)
			}
			compareWithPlayer(t, "ffprobe", &got, ffprobePackets(t, path), false)
			compareWithPlayer(t, "GStreamer", &got, gstPackets(t, path), true)
			if got.drops[1] != c.lost || got.why[LossUndecodable] != c.lost {
				t.Fatalf("%d video frames reported lost (%v), want %d undecodable", got.drops[1], got.why, c.lost)
			}
			l := logs.String()
			if c.hiddenPre != strings.Contains(l, "edit list hides") || (c.lost > 0) != strings.Contains(l, "next key frame") {
				t.Fatalf("the log does not say what was left out:\n%s", l)
			}
			for _, f := range got.frames {
				if f.Track == 1 {
					if !f.Key {
						t.Fatal("the video does not start with a key frame")
					}
					break
				}
			}
		})
	}
}

// countingReaderAt records how an MP4 is read.
type countingReaderAt struct {
	r           *os.File
	size        int64
	total, most int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.total += int64(n)
	c.most = max(c.most, int64(len(p)))
	return n, err
}

func (c *countingReaderAt) Read([]byte) (int, error) { return 0, io.EOF }
func (c *countingReaderAt) Size() int64              { return c.size }

// TestMP4ReadsInPlace: the MP4 source reads the index and then one sample
// at a time, never the whole file, and reads each byte about once.
func TestMP4ReadsInPlace(t *testing.T) {
	f, err := os.Open(mediatest.Fixture(t, "h264-aac.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	cr := &countingReaderAt{r: f, size: fi.Size()}
	var got collect
	if err := (&MP4{R: cr}).Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	largest := 0
	for _, fr := range got.frames {
		largest = max(largest, len(fr.Data))
	}
	// The index of this 3 s clip is a few kB; its largest frame some tens.
	if cr.most > max(int64(largest), 16<<10) || cr.total > fi.Size()+int64(largest) {
		t.Fatalf("read %d bytes of a %d byte file, %d at once (largest frame %d)", cr.total, fi.Size(), cr.most, largest)
	}
}

// TestMP4FromPipeIsBuffered: an MP4 on a pipe is copied to a temporary
// file (which is gone afterwards), says so, and is sent as from the file.
func TestMP4FromPipeIsBuffered(t *testing.T) {
	data := mediatest.ReadFixture(t, "cut-h264-aac.mp4")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = pw.Write(data)
		pw.Close()
	}()
	defer pr.Close()
	var logs syncBuffer
	tmp := t.TempDir()
	src, err := Sniff(pr, false, Options{Fast: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m := src.(*MP4)
	m.TempDir = tmp
	var fromPipe, fromFile collect
	if err := m.Run(context.Background(), &fromPipe); err != nil {
		t.Fatal(err)
	}
	if err := (&MP4{R: bytes.NewReader(data)}).Run(context.Background(), &fromFile); err != nil {
		t.Fatal(err)
	}
	if len(fromPipe.frames) != len(fromFile.frames) || len(fromPipe.frames) == 0 {
		t.Fatalf("%d frames from the pipe, %d from the file", len(fromPipe.frames), len(fromFile.frames))
	}
	for i := range fromPipe.frames {
		a, b := fromPipe.frames[i], fromFile.frames[i]
		if a.PTS != b.PTS || a.DTS != b.DTS || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if !strings.Contains(logs.String(), "temporary file") {
		t.Fatalf("buffering is not in the log:\n%s", logs.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the temporary copy was left behind: %v", left)
	}
}

// TestMP4ClearErrors: a fragmented MP4, a file cut off before its index,
// and one cut off inside its samples each end with a message saying so.
func TestMP4ClearErrors(t *testing.T) {
	dir := t.TempDir()
	frag := filepath.Join(dir, "frag.mp4")
	if out, err := exec.Command(mediatest.Tool(t, "ffmpeg"), "-v", "error", "-i", mediatest.Fixture(t, "h264-aac.mp4"), "-c", "copy",
		"-movflags", "frag_keyframe+empty_moov", frag).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	fragData, _ := os.ReadFile(frag)
	whole := mediatest.ReadFixture(t, "h264-aac.mp4") // faststart: the index first
	cut := mediatest.ReadFixture(t, "cut-h264-aac.mp4")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"fragmented", fragData, "fragmented MP4"},
		{"no index", cut[:len(cut)/2], "truncated"},
		{"samples cut off", whole[:len(whole)*2/3], "truncated"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got collect
			err := (&MP4{R: bytes.NewReader(c.data)}).Run(context.Background(), &got)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestMP4BuiltEdgeCases: files no encoder here makes, from the test
// writer: 2-byte NAL lengths (handed on as 4-byte ones), no sync sample
// table (every sample is one), the index after the samples, an empty edit
// that starts the video 0.5 s late (the audio before it is sent, in
// decoding order before the video: the producer decides what of it fits
// before the first key frame), and an audio edit that hides its first
// frame.
func TestMP4BuiltEdgeCases(t *testing.T) {
	_, params := fixtureAUs(t, 1)
	avcC, err := params.CodecPrivate()
	if err != nil {
		t.Fatal(err)
	}
	avcC[4] = 0xfc | 1 // 2-byte NAL lengths
	v := testTrack{handler: "vide", timescale: 90000, entry: avc1Entry(avcC), noStss: true, perChunk: 3,
		edits: []mp4Edit{{duration: 500, mediaTime: -1, rate: 1 << 16}, {duration: 0, mediaTime: 0, rate: 1 << 16}}}
	for i := range 10 {
		v.samples = append(v.samples, testSample{delta: 3000, data: []byte{0, 3, 0x65, byte(i), 0}})
	}
	a := testTrack{handler: "soun", timescale: 48000, entry: mp4aEntry([]byte{0x11, 0x88}),
		edits: []mp4Edit{{duration: 0, mediaTime: 1024, rate: 1 << 16}}}
	for i := range 40 {
		a.samples = append(a.samples, testSample{delta: 1024, sync: true, data: []byte{0x21, byte(i)}})
	}
	var logs syncBuffer
	m := &MP4{R: bytes.NewReader(buildMP4(1000, []testTrack{v, a}, false)), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	var got collect
	if err := m.Run(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	var video []media.Frame
	for _, f := range got.frames {
		if f.Track == 1 {
			video = append(video, f)
		}
	}
	if len(video) != 10 || video[0].PTS != 500*time.Millisecond || !video[0].Key {
		t.Fatalf("%d video frames, the first at %v", len(video), video[0].PTS)
	}
	var audio []media.Frame
	for _, f := range got.frames {
		if f.Track == 1 {
			if !f.Key || !bytes.Equal(f.Data[:4], []byte{0, 0, 0, 3}) {
				t.Fatalf("video frame %x: want a sync sample with a 4-byte length", f.Data)
			}
		} else {
			audio = append(audio, f)
		}
	}
	// Audio frame i (after the hidden one) plays at (i-1)*1024/48000 s,
	// and goes before the video frames that come later.
	if len(audio) != 39 || len(got.drops) != 0 || got.frames[0].Track != 2 {
		t.Fatalf("%d audio frames, %v reported lost (want 39 and none), the first frame of track %d\n%s", len(audio), got.drops, got.frames[0].Track, logs.String())
	}
	for i, f := range audio {
		if f.Data[1] != byte(i+1) || f.PTS != time.Duration(i)*1024*time.Second/48000 {
			t.Fatalf("audio frame %d is sample %d at %v", i, f.Data[1], f.PTS)
		}
	}
	var before int
	for _, f := range got.frames {
		if f.Track == 1 {
			break
		}
		before++
	}
	if before != 24 { // 0 to 0.490 s
		t.Fatalf("%d audio frames before the first video frame, want the 24 before 0.5 s", before)
	}
}

type nullSink struct{}

func (nullSink) Start([]media.Track) error { return nil }
func (nullSink) Frame(media.Frame) error   { return nil }

// TestMP4MemoryDoesNotGrowWithTheFile: sending an MP4 ten times as long
// takes no more allocations (none per sample) and a small fraction of the
// file in memory: the index and one sample at a time, never the file.
func TestMP4MemoryDoesNotGrowWithTheFile(t *testing.T) {
	long := filepath.Join(t.TempDir(), "long.mp4")
	mediatest.Run(t, nil, "ffmpeg", "-v", "error", "-stream_loop", "9", "-i", mediatest.Fixture(t, "h264-aac.mp4"), "-c", "copy", "-f", "mp4", long)
	measure := func(path string) (allocs, bytes uint64, size int64) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := (&MP4{R: f}).Run(context.Background(), nullSink{}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc, fi.Size()
	}
	shortAllocs, _, _ := measure(mediatest.Fixture(t, "h264-aac.mp4"))
	longAllocs, longBytes, longSize := measure(long)
	if longAllocs > shortAllocs+20 || longBytes > uint64(longSize)/10 {
		t.Fatalf("a 3 s clip: %d allocations; 30 s of it: %d allocations, %d bytes for a %d byte file", shortAllocs, longAllocs, longBytes, longSize)
	}
}
