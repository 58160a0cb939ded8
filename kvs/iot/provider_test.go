package iot

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/goleak"

	"github.com/kvsgo/kvsgo/internal/iottest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const alias = "kvsgo-camera"

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// dialTo reaches the stand-in whatever host name is asked for, so that
// requests carry AWS-style names in SNI and the certificate check.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

func config(e *iottest.Endpoint, d *iottest.Device, thing string) Config {
	return Config{Endpoint: iottest.Host, CertFile: d.CertFile, KeyFile: d.KeyFile, CAFile: e.CAFile, RoleAlias: alias,
		ThingName: thing, DialContext: dialTo(e.Addr), Now: e.Now}
}

func retrieve(t *testing.T, c Config) (aws.Credentials, error) {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p.Retrieve(context.Background())
}

// TestRetrieve: the request as the service wants it (the path, the thing
// name header, SNI with the endpoint's name) and the credentials it gives,
// with their expiry.
func TestRetrieve(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := iottest.Start(t, iottest.Options{Now: func() time.Time { return now }})
	e.AddRoleAlias(alias, iottest.RoleAlias{Lifetime: 3600 * time.Second})
	d := e.NewDevice(t, "porch")
	c := config(e, d, "porch")
	c.Now = time.Now // the stand-in's certificate is valid now, not in 2026
	creds, err := retrieve(t, c)
	if err != nil {
		t.Fatal(err)
	}
	want := aws.Credentials{AccessKeyID: "ASIASTANDIN000000001", SecretAccessKey: "secret-1", SessionToken: "token-1",
		Source: Source, CanExpire: true, Expires: now.Add(time.Hour)}
	if creds != want {
		t.Fatalf("got %+v\nwant %+v", creds, want)
	}
	reqs := e.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/role-aliases/"+alias+"/credentials" || r.ThingName != "porch" || r.ServerName != iottest.Host || r.DeviceID != d.ID() {
		t.Fatalf("request %+v", r)
	}

	// Without a thing name, no header at all.
	c.ThingName = ""
	if _, err := retrieve(t, c); err != nil {
		t.Fatal(err)
	}
	if r := e.Requests()[1]; r.HasThing {
		t.Fatalf("sent a thing name header: %+v", r)
	}

	// The endpoint as an https URL with a port, reached by address.
	c.Endpoint, c.DialContext = e.URL(), nil
	if _, err := retrieve(t, c); err != nil {
		t.Fatal(err)
	}
}

// TestErrors: every way it goes wrong gives the message the user sees,
// naming the likely cause and the fix, and says whether retrying may help.
func TestErrors(t *testing.T) {
	e := iottest.Start(t, iottest.Options{})
	e.AddRoleAlias(alias, iottest.RoleAlias{})
	e.AddRoleAlias("no-role", iottest.RoleAlias{RoleMissing: true})
	e.AddRoleAlias("too-long", iottest.RoleAlias{TooLong: true})
	good := e.NewDevice(t, "porch")
	data := iottest.Start(t, iottest.Options{DataEndpoint: true, Hosts: []string{"iot.example.com"}})
	for _, c := range []struct {
		name      string
		setup     func(t *testing.T) Config
		want      []string
		temporary bool
		atNew     bool // refused before any request
	}{
		{name: "unregistered certificate", setup: func(t *testing.T) Config {
			return config(e, e.UnregisteredDevice(t, "stranger"), "")
		}, want: []string{"refused the device certificate", "not registered with AWS IoT in this account and region", "inactive or revoked",
			"aws iot describe-certificate --certificate-id "}},
		{name: "revoked certificate", setup: func(t *testing.T) Config {
			d := e.NewDevice(t, "gate")
			e.SetActive(d, false)
			return config(e, d, "gate")
		}, want: []string{"refused the device certificate", "inactive or revoked"}},
		{name: "expired certificate", setup: func(t *testing.T) Config {
			d := e.ExpiredDevice(t, "shed", time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC))
			e.SetActive(d, false)
			return config(e, d, "shed")
		}, want: []string{"refused the device certificate", "it expired on 2025-06-30"}},
		{name: "certificate of another region", setup: func(t *testing.T) Config {
			d := e.NewDevice(t, "barn")
			e.SetElsewhere(d)
			return config(e, d, "barn")
		}, want: []string{`HTTP 403 "Certificate is invalid on this endpoint"`, "registered in another account or region",
			"describe-endpoint --endpoint-type iot:CredentialProvider"}},
		{name: "thing not attached", setup: func(t *testing.T) Config {
			return config(e, good, "garage")
		}, want: []string{`HTTP 403 "Invalid thing name passed"`, `the thing "garage" is not attached to this certificate`,
			"aws iot attach-thing-principal --thing-name garage"}},
		{name: "policy without the role alias", setup: func(t *testing.T) Config {
			d := e.NewDevice(t, "yard")
			e.Allow(d, "some-other-alias")
			return config(e, d, "yard")
		}, want: []string{`HTTP 403 "Access Denied"`, `does not allow iot:AssumeRoleWithCertificate on role alias "kvsgo-camera"`,
			"arn:aws:iot:eu-west-1:ACCOUNT:rolealias/kvsgo-camera"}},
		{name: "unknown role alias", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.RoleAlias = "kvsgo-cammera"
			return c
		}, want: []string{`HTTP 404 "Role alias does not exist"`, `there is no role alias "kvsgo-cammera"`, "aws iot list-role-aliases"}},
		{name: "role missing or not trusting IoT", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.RoleAlias = "no-role"
			return c
		}, want: []string{"HTTP 400", "does not trust credentials.iot.amazonaws.com", "aws iot describe-role-alias --role-alias no-role"}},
		{name: "duration above the role's maximum", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.RoleAlias = "too-long"
			return c
		}, want: []string{"HTTP 400", "lower the alias's credentialDurationSeconds", "MaxSessionDuration"}},
		{name: "data endpoint given", atNew: true, setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.Endpoint = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
			return c
		}, want: []string{"a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com is the AWS IoT data endpoint",
			"`aws iot describe-endpoint --endpoint-type iot:CredentialProvider`", "xxxxxxxx.credentials.iot.eu-west-1.amazonaws.com"}},
		{name: "an endpoint that is not a credentials endpoint", setup: func(t *testing.T) Config {
			c := config(data, good, "porch")
			c.Endpoint, c.DialContext = "iot.example.com", dialTo(data.Addr)
			c.CAFile = data.CAFile
			return c
		}, want: []string{`HTTP 404 "Not Found"`, "this is not an AWS IoT credentials endpoint",
			"describe-endpoint --endpoint-type iot:CredentialProvider"}},
		{name: "busy", temporary: true, setup: func(t *testing.T) Config {
			e.FailNext(429, `{"message":"Rate exceeded"}`, 1)
			return config(e, good, "porch")
		}, want: []string{`HTTP 429 "Rate exceeded"`, "busy or failing; trying again"}},
		{name: "failing", temporary: true, setup: func(t *testing.T) Config {
			e.FailNext(503, `<html>Service Unavailable</html>`, 1)
			return config(e, good, "porch")
		}, want: []string{`HTTP 503 "<html>Service Unavailable</html>"`, "trying again"}},
		{name: "not credentials", setup: func(t *testing.T) Config {
			e.FailNext(200, `{"message":"hello"}`, 1)
			return config(e, good, "porch")
		}, want: []string{`no "credentials" in the answer`, "does not answer like an AWS IoT credentials endpoint"}},
		{name: "nothing listening", temporary: true, setup: func(t *testing.T) Config {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			c := config(e, good, "porch")
			c.DialContext = dialTo(addr)
			return c
		}, want: []string{"connection refused", "cannot reach the endpoint; trying again"}},
		{name: "name not found", temporary: true, setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.DialContext = func(context.Context, string, string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: iottest.Host, IsNotFound: true}}
			}
			return c
		}, want: []string{"no such host", "cannot look up the endpoint's name"}},
		{name: "wrong CA file", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.CAFile = filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(c.CAFile, e.DeviceCA.PEM, 0o644); err != nil {
				t.Fatal(err)
			}
			return c
		}, want: []string{"not signed by a CA in the CA file", "Amazon Root CA 1", "AmazonRootCA1.pem"}},
		{name: "no CA file and the system's roots", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.CAFile = ""
			return c
		}, want: []string{"not signed by a CA in the system's trusted roots"}},
		{name: "certificate for another name", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.Endpoint = "c9other.credentials.iot.eu-west-1.amazonaws.com"
			return c
		}, want: []string{"not made out to c9other.credentials.iot.eu-west-1.amazonaws.com", "check the endpoint"}},
		{name: "device clock in the past", setup: func(t *testing.T) Config {
			c := config(e, good, "porch")
			c.Now = func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) }
			return c
		}, want: []string{"not valid at this device's time, 2001-01-01T00:00:00Z", "is the clock right?"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.setup(t)
			p, err := New(cfg)
			if c.atNew {
				if err == nil {
					t.Fatal("New accepted it")
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("message lacks %q:\n%s", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, err = p.Retrieve(context.Background())
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("not an *Error: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%s", w, err)
				}
			}
			if ie.Temporary != c.temporary || ie.RetryableError() != c.temporary {
				t.Errorf("temporary %v, want %v: %s", ie.Temporary, c.temporary, err)
			}
			if !strings.HasPrefix(err.Error(), "AWS IoT credentials from ") {
				t.Errorf("message does not say what failed: %s", err)
			}
			t.Log(err)
		})
	}
	if len(e.RefusedHandshakes()) < 3 {
		t.Errorf("the stand-in refused %d handshakes; the certificate cases did not reach it", len(e.RefusedHandshakes()))
	}
}

// TestFiles: missing, unreadable and wrong files are refused by New, before
// any request, saying which file and what to do.
func TestFiles(t *testing.T) {
	e := iottest.Start(t, iottest.Options{})
	d := e.NewDevice(t, "porch")
	other := e.NewDevice(t, "gate")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	encrypted := write("enc.key", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	for _, c := range []struct {
		name             string
		cert, key, ca    string
		want             []string
		endpoint, alias_ string
	}{
		{name: "no certificate file", cert: filepath.Join(dir, "missing.pem.crt"), key: d.KeyFile,
			want: []string{"the certificate file", "missing.pem.crt does not exist"}},
		{name: "no key file", cert: d.CertFile, key: filepath.Join(dir, "missing.key"), want: []string{"the private key file", "does not exist"}},
		{name: "key path is a directory", cert: d.CertFile, key: dir, want: []string{"the private key file " + dir + " is a directory"}},
		{name: "key of another certificate", cert: d.CertFile, key: other.KeyFile,
			want: []string{"the private key " + other.KeyFile + " does not belong to the certificate " + d.CertFile}},
		{name: "swapped", cert: d.KeyFile, key: d.CertFile, want: []string{"they are swapped"}},
		{name: "not PEM", cert: write("cert.der", d.Cert.Raw), key: d.KeyFile, want: []string{"holds no PEM certificate", "-----BEGIN CERTIFICATE-----"}},
		{name: "encrypted key", cert: d.CertFile, key: encrypted, want: []string{"encrypted with a passphrase", "openssl pkey"}},
		{name: "key file without a key", cert: d.CertFile, key: write("empty.key", []byte("hello\n")), want: []string{"holds no PEM private key"}},
		{name: "CA file without a certificate", cert: d.CertFile, key: d.KeyFile, ca: write("ca.pem", []byte("not a pem\n")),
			want: []string{"the CA file", "holds no PEM certificate: use Amazon Root CA 1"}},
		{name: "CA file missing", cert: d.CertFile, key: d.KeyFile, ca: filepath.Join(dir, "AmazonRootCA1.pem"),
			want: []string{"the CA file", "does not exist"}},
		{name: "no role alias", cert: d.CertFile, key: d.KeyFile, alias_: "-", want: []string{"no role alias given", "aws iot list-role-aliases"}},
		{name: "no endpoint", cert: d.CertFile, key: d.KeyFile, endpoint: "-", want: []string{"no endpoint", "describe-endpoint"}},
		{name: "plain http", cert: d.CertFile, key: d.KeyFile, endpoint: "http://" + iottest.Host, want: []string{"https only"}},
		{name: "a path", cert: d.CertFile, key: d.KeyFile, endpoint: "https://" + iottest.Host + "/role-aliases/x/credentials",
			want: []string{"give the host name alone"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Endpoint: iottest.Host, CertFile: c.cert, KeyFile: c.key, CAFile: c.ca, RoleAlias: alias}
			if c.endpoint == "-" {
				cfg.Endpoint = ""
			} else if c.endpoint != "" {
				cfg.Endpoint = c.endpoint
			}
			if c.alias_ == "-" {
				cfg.RoleAlias = ""
			}
			_, err := New(cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%s", w, err)
				}
			}
		})
	}
}

// TestUnreadableFileMessage: the message for a file kvsgo may not read
// (tests run as root, who may read anything, so the error is made here).
func TestUnreadableFileMessage(t *testing.T) {
	err := fileError("private key", "/etc/kvsgo/private.pem.key", &fs.PathError{Op: "open", Path: "/etc/kvsgo/private.pem.key", Err: fs.ErrPermission})
	for _, w := range []string{"cannot read the private key file /etc/kvsgo/private.pem.key: permission denied", "kvsgo runs as ", "chmod 640"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q:\n%s", w, err)
		}
	}
}

// TestRenewal: through the cache kvsgo uses, credentials are fetched once
// while they last, again once they are within ExpiryWindow of expiring,
// and kept through a failure that may pass while they last more than two
// minutes (the next try 30 s later), not beyond. The cache looks at the
// wall clock; the credentials' lifetimes are chosen against it.
func TestRenewal(t *testing.T) {
	e := iottest.Start(t, iottest.Options{})
	d := e.NewDevice(t, "porch")
	e.AddRoleAlias("hour", iottest.RoleAlias{Lifetime: time.Hour})
	e.AddRoleAlias("four-minutes", iottest.RoleAlias{Lifetime: 4 * time.Minute})
	e.AddRoleAlias("ninety-seconds", iottest.RoleAlias{Lifetime: 90 * time.Second})
	ctx := context.Background()
	cache := func(alias string, log *logBuffer) *aws.CredentialsCache {
		c := config(e, d, "porch")
		c.RoleAlias = alias
		if log != nil {
			c.Logger = log.logger()
		}
		cc, err := NewCredentialsCache(c)
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}

	t.Run("kept while they last", func(t *testing.T) {
		c := cache("hour", nil)
		before := e.Issued()
		first, err := c.Retrieve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			again, err := c.Retrieve(ctx)
			if err != nil || again.AccessKeyID != first.AccessKeyID {
				t.Fatalf("%v %v", again, err)
			}
		}
		if n := e.Issued() - before; n != 1 {
			t.Fatalf("fetched %d times", n)
		}
		// Renewed ahead of the real expiry: 4 to 5 minutes.
		if early := time.Now().Add(time.Hour).Sub(first.Expires); early < 4*time.Minute-time.Second || early > 5*time.Minute+time.Second {
			t.Fatalf("renewed %s before they expire", early)
		}
	})

	t.Run("renewed within the window", func(t *testing.T) {
		c := cache("four-minutes", nil)
		before := e.Issued()
		seen := map[string]bool{}
		for range 3 {
			cr, err := c.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			seen[cr.AccessKeyID] = true
		}
		if n := e.Issued() - before; n != 3 || len(seen) != 3 {
			t.Fatalf("fetched %d times, %d different keys", n, len(seen))
		}
	})

	t.Run("kept through a failed renewal", func(t *testing.T) {
		var log logBuffer
		c := cache("four-minutes", &log)
		first, err := c.Retrieve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.FailNext(503, `{"message":"Service Unavailable"}`, 1)
		reqs := len(e.Requests())
		kept, err := c.Retrieve(ctx)
		if err != nil {
			t.Fatalf("a passing failure ended the credentials: %v", err)
		}
		if kept.AccessKeyID != first.AccessKeyID || len(e.Requests()) != reqs+1 {
			t.Fatalf("kept %s (had %s), %d requests", kept.AccessKeyID, first.AccessKeyID, len(e.Requests())-reqs)
		}
		if left := time.Until(kept.Expires); left > keepFor || left < keepFor-5*time.Second {
			t.Fatalf("next try in %s, want %s", left, keepFor)
		}
		if !strings.Contains(log.String(), "cannot renew the AWS IoT credentials; using the current ones") {
			t.Fatalf("not logged: %s", log.String())
		}
		// Until then the cache answers alone.
		if again, err := c.Retrieve(ctx); err != nil || again.AccessKeyID != first.AccessKeyID || len(e.Requests()) != reqs+1 {
			t.Fatalf("%v %v, %d requests", again.AccessKeyID, err, len(e.Requests())-reqs)
		}
	})

	t.Run("not kept when they end soon", func(t *testing.T) {
		c := cache("ninety-seconds", nil)
		if _, err := c.Retrieve(ctx); err != nil {
			t.Fatal(err)
		}
		e.FailNext(503, `{"message":"Service Unavailable"}`, 1)
		_, err := c.Retrieve(ctx)
		var ie *Error
		if !errors.As(err, &ie) || !ie.Temporary {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("a refusal is not kept", func(t *testing.T) {
		c := cache("four-minutes", nil)
		if _, err := c.Retrieve(ctx); err != nil {
			t.Fatal(err)
		}
		e.FailNext(403, `{"message":"Access Denied"}`, 1)
		if _, err := c.Retrieve(ctx); err == nil || !strings.Contains(err.Error(), "Access Denied") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestKeepDecisionOnAClock: with an injected clock, credentials are kept
// after a failed renewal until two minutes before they expire, and a
// renewal that works again replaces them.
func TestKeepDecisionOnAClock(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	e := iottest.Start(t, iottest.Options{Now: clock})
	e.AddRoleAlias(alias, iottest.RoleAlias{Lifetime: time.Hour})
	d := e.NewDevice(t, "porch")
	c := config(e, d, "porch")
	c.Now = clock
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := p.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expires := first.Expires
	failed := &Error{Temporary: true, StatusCode: 503}
	for _, c := range []struct {
		at   time.Time
		keep bool
	}{
		{now.Add(30 * time.Minute), true},
		{expires.Add(-keepMin - time.Second), true},
		{expires.Add(-keepMin), false},
		{expires.Add(time.Minute), false},
	} {
		now = c.at
		kept, err := p.HandleFailToRefresh(ctx, aws.Credentials{}, failed)
		if (err == nil) != c.keep {
			t.Fatalf("at %s before expiry: kept %v, want %v", expires.Sub(now), err == nil, c.keep)
		}
		if c.keep {
			if kept.AccessKeyID != first.AccessKeyID || !kept.Expires.Equal(now.Add(keepFor)) {
				t.Fatalf("kept %+v", kept)
			}
			// The cache's early renewal leaves the time of the next try.
			adj, _ := p.AdjustExpiresBy(kept, -ExpiryWindow)
			if !adj.Expires.Equal(kept.Expires) {
				t.Fatalf("next try moved to %s", adj.Expires)
			}
		}
	}
	// Fresh credentials are renewed early again.
	now = now.Add(-50 * time.Minute)
	fresh, err := p.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if adj, _ := p.AdjustExpiresBy(fresh, -ExpiryWindow); !adj.Expires.Equal(fresh.Expires.Add(-ExpiryWindow)) {
		t.Fatalf("fresh credentials renewed at %s", adj.Expires)
	}
	// A refusal is never kept.
	if _, err := p.HandleFailToRefresh(ctx, aws.Credentials{}, &Error{StatusCode: 403}); err == nil {
		t.Fatal("kept after a refusal")
	}
}

// TestClockWarning: a device clock far from AWS's is reported, since
// requests signed with it will be refused.
func TestClockWarning(t *testing.T) {
	e := iottest.Start(t, iottest.Options{})
	e.AddRoleAlias(alias, iottest.RoleAlias{})
	d := e.NewDevice(t, "porch")
	for _, c := range []struct {
		off  time.Duration
		warn bool
	}{{0, false}, {3 * time.Minute, false}, {20 * time.Minute, true}, {-20 * time.Minute, true}} {
		var log logBuffer
		cfg := config(e, d, "porch")
		cfg.Logger = log.logger()
		cfg.Now = func() time.Time { return time.Now().Add(c.off) }
		if _, err := retrieve(t, cfg); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(log.String(), "clock is off by more than 5 minutes"); got != c.warn {
			t.Errorf("clock %s off: warned %v: %s", c.off, got, log.String())
		}
	}
}

// TestCertificateReplacedOnDisk: a device certificate renewed in place is
// used at the next request, without a restart.
func TestCertificateReplacedOnDisk(t *testing.T) {
	e := iottest.Start(t, iottest.Options{})
	e.AddRoleAlias(alias, iottest.RoleAlias{})
	old := e.NewDevice(t, "porch")
	renewed := e.NewDevice(t, "porch")
	var log logBuffer
	c := config(e, old, "porch")
	c.Logger = log.logger()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ from, to string }{{renewed.CertFile, old.CertFile}, {renewed.KeyFile, old.KeyFile}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := e.Requests()
	if reqs[0].DeviceID != old.ID() || reqs[1].DeviceID != renewed.ID() {
		t.Fatalf("certificates used: %s then %s", reqs[0].DeviceID[:8], reqs[1].DeviceID[:8])
	}
	if !strings.Contains(log.String(), "changed on disk") {
		t.Fatalf("not logged: %s", log.String())
	}
	// A half-written file does not stop renewals: the last good pair is used.
	if err := os.WriteFile(old.KeyFile, []byte("-----BEGIN PRIV"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "using the AWS IoT device certificate read before") {
		t.Fatalf("not logged: %s", log.String())
	}
}
