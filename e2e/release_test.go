package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// release runs scripts/release for linux/amd64 into a new directory.
func release(t *testing.T, env ...string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../scripts/release", "--out", out, "--targets", "linux/amd64")
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, b)
	}
	return out
}

// TestReleaseScript: the release build of linux/amd64 is static, prints the
// version, commit and date it was given, is the same bytes when built
// again, and comes with SHA256SUMS, the systemd unit (which systemd
// accepts) and the example config.
func TestReleaseScript(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("runs the linux/amd64 build: on %s/%s, build it for this machine", runtime.GOOS, runtime.GOARCH)
	}
	t.Parallel()
	env := []string{"VERSION=v1.2.3-test", "COMMIT=0123456789abcdef0123456789abcdef01234567", "DATE=2026-03-01T12:00:00Z"}
	a, b := release(t, env...), release(t, env...)
	bin := filepath.Join(a, "kvsgo-linux-amd64")

	out, err := exec.Command(bin, "version").Output()
	want := "kvsgo v1.2.3-test (commit 0123456789abcdef0123456789abcdef01234567, 2026-03-01T12:00:00Z, " + runtime.Version() + ", linux/amd64)\n"
	if err != nil || string(out) != want {
		t.Fatalf("version: %v\ngot  %q\nwant %q", err, out, want)
	}
	if ldd, err := exec.Command("ldd", bin).CombinedOutput(); err == nil || !strings.Contains(string(ldd), "not a dynamic executable") {
		t.Fatalf("dynamically linked: %s", ldd)
	}
	for _, f := range []string{"kvsgo-linux-amd64", "SHA256SUMS", "kvsgo.service", "kvsgo.yaml"} {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Fatalf("%s differs between two builds of the same commit (%v %v)", f, err1, err2)
		}
	}
	sums, err := os.ReadFile(filepath.Join(a, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kvsgo-linux-amd64", "kvsgo.service", "kvsgo.yaml"} {
		if !strings.Contains(string(sums), "  "+f+"\n") {
			t.Fatalf("SHA256SUMS lacks %s:\n%s", f, sums)
		}
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = a
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}

	// systemd's own check of the unit, with this binary in ExecStart.
	unit, err := os.ReadFile(filepath.Join(a, "kvsgo.service"))
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "kvsgo.service")
	if err := os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/local/bin/kvsgo"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	verify, err := exec.Command(mediatest.Tool(t, "systemd-analyze"), "verify", local).CombinedOutput()
	if err != nil || len(verify) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, verify)
	}

	// A different commit is a different binary.
	c := release(t, "VERSION=v1.2.3-test", "COMMIT=fedcba9876543210fedcba9876543210fedcba98", "DATE=2026-03-01T12:00:00Z")
	x, _ := os.ReadFile(bin)
	y, _ := os.ReadFile(filepath.Join(c, "kvsgo-linux-amd64"))
	if bytes.Equal(x, y) {
		t.Fatal("the commit is not in the binary")
	}
}
