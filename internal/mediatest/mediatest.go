// Package mediatest gives tests the fixtures and the real media tools
// (ffprobe, ffmpeg, mkvinfo, GStreamer) they check kvsgo against. A missing
// tool fails the test: ./scripts/test installs them, so a skip would only
// hide a gap.
package mediatest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root returns the repository root.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("mediatest: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Fixture returns the path of a file in testdata/.
func Fixture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(t), "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture %s missing (scripts/fixtures makes it): %v", name, err)
	}
	return p
}

// Reference returns the path of a file in ../shared/reference/.
func Reference(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(t), "..", "shared", "reference", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference file %s missing: %v", name, err)
	}
	return p
}

// ReadFixture returns the bytes of a file in testdata/.
func ReadFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(Fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Tool returns the path of a program the tests need, or fails the test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; ./scripts/test installs the test peers", name)
	}
	return p
}

// Run runs a tool with stdin and returns its stdout, failing the test with
// its stderr on error.
func Run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, code, stderr := Exec(t, stdin, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit status %d\n%s", name, strings.Join(args, " "), code, stderr)
	}
	return out
}

// Exec runs a tool with stdin and returns its stdout, exit status and
// stderr; it fails the test only when the tool cannot be started.
func Exec(t testing.TB, stdin []byte, name string, args ...string) (stdout []byte, code int, stderr string) {
	t.Helper()
	cmd := exec.Command(Tool(t, name), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return out.Bytes(), code, errb.String()
}

// Stream is what ffprobe reports of one stream.
type Stream struct {
	Index        int    `json:"index"`
	CodecType    string `json:"codec_type"`
	CodecName    string `json:"codec_name"`
	Profile      string `json:"profile"`
	Level        int    `json:"level"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	RFrameRate   string `json:"r_frame_rate"`
	NbReadFrames string `json:"nb_read_packets"`
	SampleRate   string `json:"sample_rate"`
	Channels     int    `json:"channels"`
}

// Probe runs ffprobe on a file (or "-" with stdin) and returns its streams,
// packets counted.
func Probe(t testing.TB, path string, stdin []byte, format string) []Stream {
	t.Helper()
	args := []string{"-v", "error", "-count_packets", "-show_streams", "-of", "json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	out := Run(t, stdin, "ffprobe", append(args, path)...)
	var res struct {
		Streams []Stream `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	return res.Streams
}

// FrameMD5 decodes the first video stream of a file (or "-" with stdin)
// with ffmpeg and returns the MD5 of every decoded frame, in output order.
func FrameMD5(t testing.TB, path string, stdin []byte, format string, stream string) []string {
	t.Helper()
	return md5s(t, path, stdin, format, stream)
}

// PacketMD5 returns the MD5 of every packet of one stream, undecoded.
func PacketMD5(t testing.TB, path string, stdin []byte, format string, stream string) []string {
	t.Helper()
	return md5s(t, path, stdin, format, stream, "-c", "copy")
}

func md5s(t testing.TB, path string, stdin []byte, format string, stream string, extra ...string) []string {
	t.Helper()
	args := []string{"-v", "error"}
	if format != "" {
		args = append(args, "-f", format)
	}
	args = append(args, "-i", path, "-map", "0:"+stream)
	args = append(args, extra...)
	args = append(args, "-f", "framemd5", "-")
	out := Run(t, stdin, "ffmpeg", args...)
	var sums []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// stream, dts, pts, duration, size, hash[, side data…]
		f := strings.Split(line, ",")
		if len(f) < 6 {
			t.Fatalf("framemd5 line %q", line)
		}
		sums = append(sums, strings.TrimSpace(f[5]))
	}
	return sums
}
