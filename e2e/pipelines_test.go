package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// TestPutFromPipelines: `gst:` with videotestsrc ! x264enc (kvssink-style
// caps, the kvssink element itself pasted along) and `exec:` with ffmpeg's
// testsrc go through put into serve and come back intact: the frames
// decode the same as the same pipeline's output written to a file.
func TestPutFromPipelines(t *testing.T) {
	srv := startServe(t, serveArgs(t.TempDir())...)
	gstChain := "videotestsrc num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc threads=1 key-int-max=30 bframes=0 tune=zerolatency ! h264parse ! video/x-h264,stream-format=avc,alignment=au"
	ffArgs := "-v error -f lavfi -i testsrc=size=320x240:rate=30 -t 3 -c:v libx264 -threads 1 -g 30 -bf 0 -pix_fmt yuv420p"
	cases := []struct {
		name, source string
		reference    func(path string) *exec.Cmd
	}{
		{"gst", "gst:" + gstChain + " ! kvssink stream-name=gst aws-region=us-east-1",
			func(path string) *exec.Cmd {
				return exec.Command(mediatest.Tool(t, "gst-launch-1.0"), append([]string{"-q", "-e"},
					strings.Fields(gstChain+" ! matroskamux ! filesink location="+path)...)...)
			}},
		{"exec", "exec:ffmpeg " + ffArgs + " -f h264 -",
			func(path string) *exec.Cmd {
				return exec.Command(mediatest.Tool(t, "ffmpeg"), append(strings.Fields(ffArgs), "-f", "matroska", path)...)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := kvsgoCmd(t, nil, "put", "--quiet", "--stream", c.name, "--source", c.source, "--endpoint", srv.url)
			if code != 0 || !strings.Contains(out, "90 frames, 3 fragments, 3 persisted, 0 errors") {
				t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
			}
			ref := filepath.Join(t.TempDir(), "ref.mkv")
			if o, err := c.reference(ref).CombinedOutput(); err != nil {
				t.Fatalf("reference: %v %s", err, o)
			}
			got := filepath.Join(t.TempDir(), "got.mkv")
			if err := os.WriteFile(got, getMedia(t, srv.url, c.name), 0o644); err != nil {
				t.Fatal(err)
			}
			want := mediatest.FrameMD5(t, ref, nil, "", "v:0")
			back := mediatest.FrameMD5(t, got, nil, "", "v:0")
			if len(want) != 90 || !slices.Equal(back, want) {
				t.Fatalf("%d frames back, %d in the reference, or they differ", len(back), len(want))
			}
		})
	}
}
