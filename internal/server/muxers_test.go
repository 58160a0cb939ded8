package server_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
)

// TestRealMuxersThroughGetMedia: Matroska produced live by ffmpeg and by
// GStreamer's matroskamux is streamed into PutMedia as it is produced, read
// back with the AWS CLI's get-media, and decodes to the same frames.
func TestRealMuxersThroughGetMedia(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cmd    []string
		audio  bool
		frames int
	}{
		{"ffmpeg", []string{"ffmpeg", "-v", "error", "-i", mediatest.Fixture(t, "h264-aac.mkv"), "-c", "copy", "-f", "matroska", "-"}, true, 90},
		{"gstreamer", []string{"gst-launch-1.0", "-q", "videotestsrc", "num-buffers=90", "!", "video/x-raw,width=320,height=240,framerate=30/1",
			"!", "x264enc", "key-int-max=30", "bframes=0", "tune=zerolatency", "!", "h264parse",
			"!", "matroskamux", "streamable=true", "!", "fdsink", "fd=1"}, false, 90},
	}
	ts := startServer(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts.createStream(t, c.name, 24)
			cmd := exec.Command(mediatest.Tool(t, c.cmd[0]), c.cmd[1:]...)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Keep what the muxer produced, to compare with.
			var produced bytes.Buffer
			var mu sync.Mutex
			body := io.TeeReader(stdout, lockedWriter{&produced, &mu})
			acks, code := putMedia(t, ts.URL, c.name, body, "RELATIVE")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			n := countAcks(acks)
			if code != 200 || n[kvs.AckError] != 0 || n[kvs.AckPersisted] == 0 || n[kvs.AckPersisted] != n[kvs.AckBuffering] {
				t.Fatalf("status %d, acks %v", code, n)
			}

			src := filepath.Join(t.TempDir(), "src.mkv")
			if err := os.WriteFile(src, produced.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.mkv")
			if o, code, stderr := ts.aws(t, "kinesis-video-media", "get-media", "--stream-name", c.name,
				"--start-selector", "StartSelectorType=EARLIEST", out); code != 0 {
				t.Fatalf("get-media: %s %s", o, stderr)
			}
			want := mediatest.FrameMD5(t, src, nil, "", "v:0")
			got := mediatest.FrameMD5(t, out, nil, "", "v:0")
			if len(want) != c.frames || !slices.Equal(got, want) {
				t.Fatalf("video: %d frames back, %d sent (want %d), or they differ", len(got), len(want), c.frames)
			}
			if c.audio {
				want := mediatest.PacketMD5(t, src, nil, "", "a:0")
				got := mediatest.PacketMD5(t, out, nil, "", "a:0")
				if len(want) == 0 || !slices.Equal(got, want) {
					t.Fatalf("audio: %d packets back, %d sent, or they differ", len(got), len(want))
				}
			}
		})
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
