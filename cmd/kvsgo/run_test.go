package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunExampleConfig: the example config shipped with the release is
// read by kvsgo run, each stream's keys landing in put's own settings:
// the AWS IoT and buffering keys too.
func TestRunExampleConfig(t *testing.T) {
	t.Setenv("KVSGO_THING", "shed")
	t.Setenv("GATE_USER", "admin")
	t.Setenv("GATE_PASSWORD", "pa$$:word")
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	cfg, _, err := loadFleet(env, "../../packaging/kvsgo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(streamNames(cfg.Streams), " "); got != "shed-porch shed-gate shed-garage" {
		t.Fatalf("streams %s", got)
	}
	if cfg.Global["metrics-addr"] != "127.0.0.1:9090" {
		t.Errorf("metrics-addr %q", cfg.Global["metrics-addr"])
	}
	gate, err := streamFlags(env, cfg.Streams[1])
	if err != nil {
		t.Fatal(err)
	}
	if gate.src != "rtsp://admin:pa$$:word@192.168.1.20:554/stream1" || gate.region != "eu-west-1" || gate.bufferDuration != 5*time.Minute ||
		gate.storageMB != 256 || gate.giveUp != 0 || gate.iot.cfg.RoleAlias != "kvsgo-camera" || gate.iot.cfg.ThingName != "shed" || !gate.iot.enabled() || !gate.quiet {
		t.Fatalf("gate's settings: %+v", gate)
	}
	porch, err := streamFlags(env, cfg.Streams[0])
	if err != nil {
		t.Fatal(err)
	}
	if porch.camera.Width != 1280 || porch.fps != 30 || porch.camera.FPS != 30 || porch.camera.Bitrate != 2000000 {
		t.Fatalf("porch's camera: %+v", porch.camera)
	}
}

// TestRunConfigErrors: kvsgo run refuses a file with mistakes before it
// starts anything, naming each with its line, and also what put itself
// would refuse (flags that go together).
func TestRunConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kvsgo.yaml")
	os.WriteFile(file, []byte("buffer-dir: /var/lib/kvsgo\nstreams:\n  - stream: a\n    source: testsrc\n    iot-cert: c.pem\n  - stream: b\n    source: testsrc\n    buffer-size: 0\n  - stream: c\n    source: testsrc\n    widht: 640\n    buffer-size: 0\n"), 0o644)
	code, _, errOut := runCLI("run", "--config", file, "--check")
	for _, want := range []string{
		"kvsgo run: 3 mistakes in " + file + ", nothing changed:\n",
		file + `:11: unknown key "widht"; did you mean "width"?`,
		file + `:3: stream "a": AWS IoT credentials need --iot-endpoint, --iot-cert, --iot-key and --iot-role-alias; missing --iot-endpoint, --iot-key, --iot-role-alias`,
		file + `:6: stream "b": --buffer-size and --buffer-age must be more than 0`,
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, no %q in:\n%s", code, want, errOut)
		}
	}
	if code, _, errOut := runCLI("run", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 1 || !strings.Contains(errOut, "none.yaml: no such file") {
		t.Errorf("a missing file: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("run"); code != 2 || !strings.Contains(errOut, "--config is required") {
		t.Errorf("no --config: %d %s", code, errOut)
	}
}

// TestRunGiveUpDefault: a stream of kvsgo run retries for ever (keeping
// its buffer) unless the file sets give-up-after.
func TestRunGiveUpDefault(t *testing.T) {
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	file := filepath.Join(t.TempDir(), "kvsgo.yaml")
	os.WriteFile(file, []byte("streams:\n  - stream: a\n    source: testsrc\n  - stream: b\n    source: testsrc\n    give-up-after: 5s\n"), 0o644)
	cfg, _, err := loadFleet(env, file)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := streamFlags(env, cfg.Streams[0])
	b, _ := streamFlags(env, cfg.Streams[1])
	if a.giveUp != 0 || b.giveUp != 5*time.Second {
		t.Fatalf("give-up-after: a %s, b %s", a.giveUp, b.giveUp)
	}
}
