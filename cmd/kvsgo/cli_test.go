package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
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

// TestKVSSinkAliasesSettings: kvssink's names land on the settings the
// run uses, in kvssink's units: seconds for max-latency,
// connection-staleness and buffer-duration, MB for storage-size.
func TestKVSSinkAliasesSettings(t *testing.T) {
	parse := func(args ...string) putFlags {
		t.Helper()
		var o, e bytes.Buffer
		f, err := parsePutFlags(&cliEnv{stdout: &o, stderr: &e}, append([]string{"--source", "testsrc"}, args...))
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, e.String())
		}
		return f
	}
	f := parse("--stream-name", "porch", "--aws-region", "eu-west-1", "--retention-period", "2", "--storage-size", "64",
		"--connection-staleness", "30", "--buffer-duration", "300", "--framerate", "25", "--fragment-duration", "2000")
	if f.stream != "porch" || f.region != "eu-west-1" || f.retention != 2 || f.storageMB != 64 || f.ackTimeout != 30*time.Second ||
		f.bufferDuration != 300*time.Second || f.fps != 25 || f.camera.FPS != 25 || f.fragmentDuration != 2000 {
		t.Fatalf("kvssink's names: %+v", f)
	}
	if f := parse("--stream-name", "s", "--max-latency", "7"); f.ackTimeout != 7*time.Second {
		t.Fatalf("--max-latency 7: ack timeout %s, want 7s", f.ackTimeout)
	}
	// Without them, kvsgo's own defaults.
	if f := parse("--stream", "s"); f.ackTimeout != 10*time.Second || f.bufferDuration != 2*time.Minute || f.storageMB != 128 {
		t.Fatalf("defaults: %+v", f)
	}
}

// TestVersionFromLinker: what scripts/release sets is what `kvsgo version`
// prints.
func TestVersionFromLinker(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-03-01T12:00:00Z"
	_, out, _ := runCLI("version")
	want := "kvsgo v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, 2026-03-01T12:00:00Z, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if out != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
}

// TestPutIoTFlags: the AWS IoT flags go together, exclude access keys, and
// name what is missing or wrong before anything starts.
func TestPutIoTFlags(t *testing.T) {
	iotArgs := []string{"--iot-endpoint", "c2abc.credentials.iot.eu-west-1.amazonaws.com", "--iot-cert", "/nonexistent/device.pem.crt",
		"--iot-key", "/nonexistent/private.pem.key", "--iot-role-alias", "kvsgo-camera", "--iot-thing-name", "porch"}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"incomplete", []string{"put", "--source", "testsrc", "--iot-endpoint", "c2abc.credentials.iot.eu-west-1.amazonaws.com"}, 2,
			"AWS IoT credentials need --iot-endpoint, --iot-cert, --iot-key and --iot-role-alias; missing --iot-cert, --iot-key, --iot-role-alias"},
		{"with access keys", append([]string{"put", "--source", "testsrc", "--access-key", "A", "--secret-key", "B"}, iotArgs...), 2,
			"give --access-key/--secret-key or the AWS IoT flags, not both"},
		{"both forms", []string{"put", "--source", "testsrc", "--iot-role-alias", "r", "--iot-certificate", "iot-certificate,endpoint=e"}, 2,
			"give --iot-certificate or the --iot-* flags, not both"},
		{"bad kvssink string", []string{"put", "--stream", "s", "--source", "testsrc", "--iot-certificate", "iot-certificate,endpoint=e,cert-path=c"}, 2,
			"--iot-certificate: kvssink iot-certificate: missing key-path, role-aliases"},
		// The stream defaults to the thing name, so this gets as far as
		// the files.
		{"stream from the thing name", append([]string{"put", "--source", "testsrc"}, iotArgs...), 1,
			"kvsgo put: AWS IoT credentials: the certificate file /nonexistent/device.pem.crt does not exist"},
		{"data endpoint", append(append([]string{"put", "--source", "testsrc"}, iotArgs...), "--iot-endpoint", "a1b2c3-ats.iot.eu-west-1.amazonaws.com"), 1,
			"a1b2c3-ats.iot.eu-west-1.amazonaws.com is the AWS IoT data endpoint"},
		{"kvssink's form", []string{"put", "--stream", "porch", "--source", "testsrc", "--iot-certificate",
			"iot-certificate,endpoint=c2abc.credentials.iot.eu-west-1.amazonaws.com,cert-path=/nonexistent/c.pem,key-path=/k,ca-path=/ca,role-aliases=r"}, 1,
			"the certificate file /nonexistent/c.pem does not exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCLI(c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, want %d; stderr:\n%s\nwant %q", code, c.code, errOut, c.want)
			}
		})
	}
}
