package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "kvsgo ") || !strings.Contains(out, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("version: %d %q", code, out)
	}
	if code2, out2, _ := runCLI("--version"); code2 != 0 || out2 != out {
		t.Fatalf("--version: %d %q", code2, out2)
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		code, out, _ := runCLI(args...)
		if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "version") {
			t.Fatalf("%v: %d %q", args, code, out)
		}
	}
	code, _, errOut := runCLI("help", "version")
	if code != 0 || !strings.Contains(errOut, "Usage: kvsgo version") {
		t.Fatalf("help version: %d %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, errOut := runCLI(); code != 2 || !strings.Contains(errOut, "Usage:") {
		t.Fatalf("no command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("version", "--bogus"); code != 2 || !strings.Contains(errOut, "bogus") {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("version", "extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Fatalf("extra argument: %d %q", code, errOut)
	}
}

// TestStaticBinary builds the real binary without cgo, as released, and
// runs it.
func TestStaticBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kvsgo")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "kvsgo v9.9.9-test ") {
		t.Fatalf("version: %v %q", err, out)
	}
	if ldd, err := exec.Command("ldd", bin).CombinedOutput(); err == nil || !strings.Contains(string(ldd), "not a dynamic executable") {
		t.Fatalf("binary is dynamically linked: %s", ldd)
	}
}

// TestPutFlagsAndKVSSinkAliases: kvssink's property names are accepted in
// its units, and mistakes are usage errors with a message.
func TestPutFlagsAndKVSSinkAliases(t *testing.T) {
	if code, _, errOut := runCLI("put", "--source", "testsrc"); code != 2 || !strings.Contains(errOut, "--stream and --source are required") {
		t.Fatalf("no stream: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("put", "--stream-name", "s", "--source", "testsrc", "--max-latency", "abc"); code != 2 || !strings.Contains(errOut, "max-latency") {
		t.Fatalf("bad number: %d %q", code, errOut)
	}
	// Every kvssink name parses; the source that cannot be opened is the
	// first thing that fails.
	code, _, errOut := runCLI("put", "--stream-name", "s", "--aws-region", "eu-west-1", "--access-key", "A", "--secret-key", "B",
		"--retention-period", "2", "--max-latency", "60", "--fragment-duration", "2000", "--storage-size", "64",
		"--connection-staleness", "30", "--buffer-duration", "120", "--framerate", "25", "--source", "/nonexistent/file.h264")
	if code != 1 || !strings.Contains(errOut, "cannot open the source") {
		t.Fatalf("kvssink aliases: %d %q", code, errOut)
	}
}
