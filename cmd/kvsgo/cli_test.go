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
