package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// TestCameraBuild: the camera build (go build -tags camera: put, run and
// get) is a smaller binary that streams to a full kvsgo serve, frame for
// frame, and says where serve is instead of serving.
func TestCameraBuild(t *testing.T) {
	t.Parallel()
	camera := filepath.Join(t.TempDir(), "kvsgo-camera")
	build := exec.Command("go", "build", "-tags", "camera", "-o", camera, "../cmd/kvsgo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the camera build: %v\n%s", err, out)
	}
	full, err := os.Stat(binary)
	if err != nil {
		t.Fatal(err)
	}
	cam, err := os.Stat(camera)
	if err != nil {
		t.Fatal(err)
	}
	if cam.Size() > full.Size()*3/4 {
		t.Fatalf("the camera build is %d bytes, the full one %d: it should leave out a quarter at least", cam.Size(), full.Size())
	}
	if help, _ := exec.Command(camera, "help").CombinedOutput(); !strings.Contains(string(help), "serve       not in this camera build") {
		t.Fatalf("kvsgo-camera help does not say serve is not in it:\n%s", help)
	}
	for _, cmd := range []string{"serve", "demo"} {
		out, err := exec.Command(camera, cmd).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "camera build") || !strings.Contains(string(out), "full kvsgo") {
			t.Fatalf("kvsgo-camera %s: %v\n%s", cmd, err, out)
		}
	}

	srv := startServe(t, serveArgs(t.TempDir())...)
	clip := mediatest.Fixture(t, "clip-a.ts")
	put := exec.Command(camera, "put", "--stream", "camera", "--endpoint", srv.url, "--source", clip, "--fast", "--quiet")
	put.Env = awsEnv()
	var o, e bytes.Buffer
	put.Stdout, put.Stderr = &o, &e
	if err := put.Run(); err != nil {
		t.Fatalf("kvsgo-camera put: %v\n%s\n%s", err, o.String(), e.String())
	}
	sum := parseSummary(t, o.String())
	if sum.fragments == 0 || sum.persisted != sum.fragments {
		t.Fatalf("kvsgo-camera put: %s", sum.line)
	}
	got := filepath.Join(t.TempDir(), "got.mkv")
	awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", "camera", "--start-selector", "StartSelectorType=EARLIEST", got)
	want := mediatest.FrameMD5(t, clip, nil, "", "v:0")
	if back := mediatest.FrameMD5(t, got, nil, "", "v:0"); len(want) == 0 || !slices.Equal(back, want) {
		t.Fatalf("%d video frames back of %d sent, or they differ", len(back), len(want))
	}
}
