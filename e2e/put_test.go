package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// kvsgoCmd runs the binary with the e2e credentials.
func kvsgoCmd(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = awsEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func awsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
}

// awsCLI runs the real AWS CLI against the server.
func awsCLI(t *testing.T, endpoint string, args ...string) string {
	t.Helper()
	cmd := exec.Command(mediatest.Tool(t, "aws"), append(args, "--endpoint-url", endpoint, "--output", "json")...)
	cmd.Env = awsEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("aws %v: %v: %s", args, err, e.String())
	}
	return o.String()
}

// TestPutEveryFixture: each fixture, sent by `kvsgo put` into `kvsgo
// serve`, is listed by the AWS CLI as one fragment per key frame, and
// get-media gives back frames identical to the source's.
func TestPutEveryFixture(t *testing.T) {
	srv := startServe(t, "--data", t.TempDir(), "--access-key", creds.AccessKeyID, "--secret-key", creds.SecretAccessKey)
	cases := []struct {
		name, fixture, format string
		stdin                 bool
		audio                 bool
	}{
		{"h264", "h264-baseline.h264", "h264", false, false},
		{"h264-bframes", "h264-high-bframes.h264", "h264", false, false},
		{"h265", "h265.h265", "hevc", false, false},
		{"matroska-aac", "h264-aac.mkv", "", false, true},
		{"mpegts-aac", "h264-aac.ts", "", false, true},
		{"mp4-aac", "h264-aac.mp4", "", false, true},
		{"stdin", "h264-baseline.h264", "h264", true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := mediatest.Fixture(t, c.fixture)
			args := []string{"put", "--stream", c.name, "--endpoint", srv.url, "--fast", "--quiet"}
			var stdin []byte
			if c.stdin {
				stdin = mediatest.ReadFixture(t, c.fixture)
				args = append(args, "--source", "-")
			} else {
				args = append(args, "--source", src)
			}
			out, errOut, code := kvsgoCmd(t, stdin, args...)
			if code != 0 || !strings.Contains(out, " frames, 4 fragments, 4 persisted, 0 errors, 0 dropped fragments") || strings.Contains(errOut, "dropped") {
				t.Fatalf("kvsgo put: exit %d\n%s\n%s", code, out, errOut)
			}
			var listed struct {
				Fragments []struct{ FragmentNumber string }
			}
			if err := json.Unmarshal([]byte(awsCLI(t, srv.url, "kinesis-video-archived-media", "list-fragments", "--stream-name", c.name)), &listed); err != nil {
				t.Fatal(err)
			}
			if len(listed.Fragments) != 4 {
				t.Fatalf("list-fragments: %d fragments, want 4 (one per key frame)", len(listed.Fragments))
			}
			got := filepath.Join(t.TempDir(), "got.mkv")
			awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", c.name, "--start-selector", "StartSelectorType=EARLIEST", got)
			want := mediatest.FrameMD5(t, src, nil, c.format, "v:0")
			back := mediatest.FrameMD5(t, got, nil, "", "v:0")
			if len(want) != 90 || !slices.Equal(back, want) {
				t.Fatalf("get-media decodes to %d frames, the source to %d, or they differ", len(back), len(want))
			}
			if c.audio {
				// Packets compare directly, but MPEG-TS carries AAC with ADTS
				// headers that Matroska does not: there, compare decoded audio.
				md5 := mediatest.PacketMD5
				if strings.HasSuffix(c.fixture, ".ts") {
					md5 = mediatest.FrameMD5
				}
				wantA := md5(t, src, nil, "", "a:0")
				if strings.HasSuffix(c.fixture, ".mp4") {
					// Sent as players show it: not the AAC priming its edit list hides.
					wantA = shownAudioMD5(t, src)
				}
				backA := md5(t, got, nil, "", "a:0")
				if len(wantA) == 0 || !slices.Equal(backA, wantA) {
					t.Fatalf("audio: %d frames back, %d sent, or they differ", len(backA), len(wantA))
				}
			}
		})
	}
}

// TestPutTestsrcMetricsAndCtrlC: `--source testsrc` streams the built-in
// clip until interrupted; /healthz and /metrics report it; Ctrl-C ends it
// cleanly with everything persisted.
func TestPutTestsrcMetricsAndCtrlC(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(binary, "put", "--quiet", "--stream", "testsrc", "--source", "testsrc", "--endpoint", srv.url, "--metrics-addr", metrics)
	cmd.Env = awsEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := regexp.MustCompile(`kvsgo_put_fragments_persisted (\d+)`).FindSubmatch(body); m != nil {
				if n, _ := strconv.Atoi(string(m[1])); n >= 2 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed 2 persisted fragments: %s", e.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.Get("http://" + metrics + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz while streaming: %v %v", resp, err)
	}
	resp.Body.Close()
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !regexp.MustCompile(`(\d+) fragments, (\d+) persisted, 0 errors`).MatchString(o.String()) {
			t.Fatalf("after Ctrl-C: %v\n%s\n%s", err, o.String(), e.String())
		}
		m := regexp.MustCompile(`(\d+) fragments, (\d+) persisted`).FindStringSubmatch(o.String())
		if m[1] != m[2] {
			t.Fatalf("after Ctrl-C not every fragment was persisted: %s", o.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kvsgo put did not stop on Ctrl-C: %s", e.String())
	}
}

// TestEmbeddingExample runs examples/mkv2kvs, the Go API example.
func TestEmbeddingExample(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	cmd := exec.Command("go", "run", "../examples/mkv2kvs", "-stream", "example", "-endpoint", srv.url, mediatest.Fixture(t, "h264-aac.mkv"))
	cmd.Env = awsEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "4 fragments, 4 persisted") {
		t.Fatalf("example: %v\n%s", err, out)
	}
}
