package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/internal/iottest"
	"github.com/kvsgo/kvsgo/internal/mediatest"
)

// iotStandIn runs a stand-in of the AWS IoT credentials endpoint whose
// credentials sign with the key pair `kvsgo serve` checks (secret: the
// secret they carry), each with its own session token.
func iotStandIn(t *testing.T, secret string, life time.Duration) (*iottest.Endpoint, *iottest.Device) {
	t.Helper()
	e := iottest.Start(t, iottest.Options{Issue: func(n int) iottest.Credentials {
		return iottest.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: secret, SessionToken: fmt.Sprintf("token-%d", n)}
	}})
	e.AddRoleAlias("kvsgo-camera", iottest.RoleAlias{Lifetime: life})
	return e, e.NewDevice(t, "porch")
}

func iotArgs(e *iottest.Endpoint, d *iottest.Device, thing string) []string {
	return []string{"--iot-endpoint", e.URL(), "--iot-cert", d.CertFile, "--iot-key", d.KeyFile, "--iot-ca", e.CAFile,
		"--iot-role-alias", "kvsgo-camera", "--iot-thing-name", thing}
}

// TestPutWithIoTCredentials: `kvsgo put --iot-…` gets its credentials from
// the stand-in over mutual TLS and they sign PutMedia into a `kvsgo serve`
// that checks signatures; the stream takes the thing's name. The
// credentials last less than the renewal window, so every connection is
// signed with new ones: renewal while streaming, and every frame arrives
// once.
func TestPutWithIoTCredentials(t *testing.T) {
	t.Parallel()
	e, d := iotStandIn(t, creds.SecretAccessKey, 3*time.Minute)
	srv := startServe(t, serveArgs(t.TempDir())...)
	src := mediatest.Fixture(t, "h264-baseline.h264")
	out, errOut, code := startPut(t, append([]string{"--source", src, "--endpoint", srv.url}, iotArgs(e, d, "porch")...)...)()
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	checkEveryFrameOnce(t, srv.url, "porch", src)
	reqs := e.Requests()
	if len(reqs) < 3 || e.Issued() < 3 {
		t.Fatalf("%d requests, %d credentials: not renewed while streaming\n%s", len(reqs), e.Issued(), errOut)
	}
	for _, r := range reqs {
		if r.ThingName != "porch" || r.DeviceID != d.ID() || r.Status != 200 {
			t.Fatalf("request %+v", r)
		}
	}
	if connected := strings.Count(errOut, "streaming to"); connected < 2 {
		t.Fatalf("%d connections\n%s", connected, errOut)
	}
}

// TestPutWithIoTCredentialsRefused: credentials the service refuses end
// the run at once, saying where they came from and what the role needs;
// a wrong thing name is reported at once (the check runs beside the
// source: it does not hold up recording).
func TestPutWithIoTCredentialsRefused(t *testing.T) {
	t.Parallel()
	e, d := iotStandIn(t, "not-the-secret-serve-knows", time.Hour)
	srv := startServe(t, serveArgs(t.TempDir())...)
	src := mediatest.Fixture(t, "h264-baseline.h264")
	out, errOut, code := startPut(t, append([]string{"--source", src, "--endpoint", srv.url}, iotArgs(e, d, "porch")...)...)()
	if code != 1 || !strings.Contains(errOut, "credentials refused") ||
		!strings.Contains(errOut, `The credentials come from AWS IoT role alias "kvsgo-camera": its IAM role needs kinesisvideo:DescribeStream`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	start := time.Now()
	out, errOut, code = startPut(t, append([]string{"--source", src, "--endpoint", srv.url}, iotArgs(e, d, "garage")...)...)()
	if code != 1 || !strings.Contains(errOut, `HTTP 403 "Invalid thing name passed": the thing "garage" is not attached to this certificate`) ||
		strings.Contains(errOut, "retrying") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %s to say so", d)
	}
}
