// Package iottest is a stand-in for the AWS IoT credentials provider
// (`GET /role-aliases/ALIAS/credentials` over mutual TLS), for tests: a
// registry of device certificates, things, policies and role aliases, and
// the service's answers as the real one gives them (status codes and
// message bodies recorded from it: "Invalid thing name passed", "Access
// Denied", "Role alias does not exist", …). Certificates are made in the
// test with crypto/x509.
package iottest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Host is the name the stand-in's certificate is made for: what `aws iot
// describe-endpoint --endpoint-type iot:CredentialProvider` prints.
const Host = "c2example7k3vz.credentials.iot.eu-west-1.amazonaws.com"

// CA signs certificates.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	PEM     []byte
	serials int64
}

// NewCA makes a self-signed certificate authority.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serials: 1}
}

// Leaf is an issued certificate and its key, in PEM as AWS hands them out.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
	TLS     tls.Certificate
}

// ID is what AWS IoT calls the certificate: the SHA-256 of its DER bytes.
func (l *Leaf) ID() string {
	sum := sha256.Sum256(l.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Issue makes a certificate: a server's for hosts, else a device's.
func (ca *CA) Issue(tb testing.TB, name string, hosts []string, notBefore, notAfter time.Time) *Leaf {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca.serials++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serials),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	l := &Leaf{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// Device is a device certificate as the registry knows it, with its files
// written where a device keeps them.
type Device struct {
	*Leaf
	CertFile, KeyFile string
	// Registry state; change it through the Endpoint's methods.
	active    bool
	elsewhere bool            // registered in another account or region
	things    map[string]bool // attached things
	aliases   map[string]bool // role aliases its policy allows; "*" for all
}

// RoleAlias is a role alias and the state of the IAM role behind it.
type RoleAlias struct {
	RoleMissing bool          // no such role, or it does not trust credentials.iot.amazonaws.com
	TooLong     bool          // credentialDurationSeconds above the role's MaxSessionDuration
	Lifetime    time.Duration // of the credentials [1 h]
}

// Credentials are what the stand-in hands out.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
}

// Request is one request the stand-in answered.
type Request struct {
	Path       string
	ThingName  string // the x-amzn-iot-thingname header
	HasThing   bool   // whether the header was sent at all
	ServerName string // SNI
	DeviceID   string
	Status     int
}

// Endpoint is the running stand-in.
type Endpoint struct {
	Addr       string // 127.0.0.1:port
	CA         *CA    // signs the endpoint's certificate ("Amazon Root CA 1")
	CAFile     string // CA.PEM on disk
	DeviceCA   *CA    // signs device certificates
	Now        func() time.Time
	dir        string
	ln         net.Listener
	srv        *http.Server
	mu         sync.Mutex
	devices    map[string]*Device
	aliases    map[string]RoleAlias
	requests   []Request
	issued     int
	issue      func(n int) Credentials
	failWith   []failure // answers for the next requests, in order
	dataPlane  bool
	handshakes []error
}

type failure struct {
	status int
	body   string
}

// Options configure Start.
type Options struct {
	// Hosts the endpoint's certificate is made for [Host, 127.0.0.1].
	Hosts []string
	// Now is the stand-in's clock: the expiration it gives and its Date
	// header [time.Now].
	Now func() time.Time
	// Issue makes the n-th credentials (n from 1) [distinct keys each time].
	Issue func(n int) Credentials
	// DataEndpoint answers as the AWS IoT data endpoint (…-ats.iot…) does
	// to a credentials request: 404 {"message":"Not Found"}.
	DataEndpoint bool
}

// Start runs a stand-in on a loopback port until the test ends.
func Start(tb testing.TB, o Options) *Endpoint {
	tb.Helper()
	if len(o.Hosts) == 0 {
		o.Hosts = []string{Host, "127.0.0.1"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Endpoint{CA: NewCA(tb, "Stand-in Root CA 1"), DeviceCA: NewCA(tb, "AWS IoT stand-in device CA"), Now: o.Now,
		dir: tb.TempDir(), devices: map[string]*Device{}, aliases: map[string]RoleAlias{}, issue: o.Issue, dataPlane: o.DataEndpoint}
	e.CAFile = filepath.Join(e.dir, "AmazonRootCA1.pem")
	if err := os.WriteFile(e.CAFile, e.CA.PEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	serverCert := e.CA.Issue(tb, o.Hosts[0], o.Hosts, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{serverCert.TLS},
		ClientAuth:   tls.RequireAnyClientCert,
		// Registered and active certificates only: the service refuses
		// the others in the handshake.
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := e.checkDevice(cs)
			if err != nil {
				e.mu.Lock()
				e.handshakes = append(e.handshakes, err)
				e.mu.Unlock()
			}
			return err
		},
		NextProtos: []string{"http/1.1"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.ln = tls.NewListener(ln, tlsCfg)
	e.Addr = ln.Addr().String()
	// Refused handshakes are the point of some tests: not worth a log line.
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.srv.Serve(e.ln)
	}()
	tb.Cleanup(func() {
		_ = e.srv.Close()
		<-done
	})
	return e
}

// URL is the endpoint as a user gives it: https://127.0.0.1:port.
func (e *Endpoint) URL() string { return "https://" + e.Addr }

func (e *Endpoint) checkDevice(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dataPlane {
		return nil
	}
	d := e.devices[deviceID(cs.PeerCertificates[0])]
	switch {
	case d == nil:
		return errors.New("certificate not registered")
	case !d.active:
		return errors.New("certificate inactive")
	}
	return nil
}

func deviceID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// NewDevice registers an active device certificate with the thing attached
// and a policy allowing every role alias, and writes its files.
func (e *Endpoint) NewDevice(tb testing.TB, thing string) *Device {
	tb.Helper()
	d := e.UnregisteredDevice(tb, thing)
	d.active = true
	d.things[thing] = true
	d.aliases["*"] = true
	e.mu.Lock()
	e.devices[d.ID()] = d
	e.mu.Unlock()
	return d
}

// UnregisteredDevice makes a device certificate the registry does not know.
func (e *Endpoint) UnregisteredDevice(tb testing.TB, name string) *Device {
	tb.Helper()
	return e.writeDevice(tb, e.DeviceCA.Issue(tb, name, nil, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour)))
}

// ExpiredDevice registers an active certificate whose validity ended.
func (e *Endpoint) ExpiredDevice(tb testing.TB, thing string, notAfter time.Time) *Device {
	tb.Helper()
	d := e.writeDevice(tb, e.DeviceCA.Issue(tb, thing, nil, notAfter.Add(-24*time.Hour), notAfter))
	d.active, d.things[thing], d.aliases["*"] = true, true, true
	e.mu.Lock()
	e.devices[d.ID()] = d
	e.mu.Unlock()
	return d
}

func (e *Endpoint) writeDevice(tb testing.TB, l *Leaf) *Device {
	tb.Helper()
	dir, err := os.MkdirTemp(e.dir, "device")
	if err != nil {
		tb.Fatal(err)
	}
	d := &Device{Leaf: l, CertFile: filepath.Join(dir, "device.pem.crt"), KeyFile: filepath.Join(dir, "private.pem.key"),
		things: map[string]bool{}, aliases: map[string]bool{}}
	if err := os.WriteFile(d.CertFile, l.CertPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(d.KeyFile, l.KeyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return d
}

// SetActive marks a certificate ACTIVE or INACTIVE/REVOKED.
func (e *Endpoint) SetActive(d *Device, active bool) {
	e.mu.Lock()
	d.active = active
	e.mu.Unlock()
}

// SetElsewhere marks a certificate as registered in another account or
// region: the endpoint answers 403 "Certificate is invalid on this endpoint".
func (e *Endpoint) SetElsewhere(d *Device) {
	e.mu.Lock()
	d.elsewhere = true
	e.mu.Unlock()
}

// Allow replaces the role aliases the certificate's policy allows
// iot:AssumeRoleWithCertificate on.
func (e *Endpoint) Allow(d *Device, aliases ...string) {
	e.mu.Lock()
	d.aliases = map[string]bool{}
	for _, a := range aliases {
		d.aliases[a] = true
	}
	e.mu.Unlock()
}

// AddRoleAlias creates a role alias.
func (e *Endpoint) AddRoleAlias(name string, a RoleAlias) {
	e.mu.Lock()
	e.aliases[name] = a
	e.mu.Unlock()
}

// FailNext makes the next requests get these answers (e.g. 503, 429).
func (e *Endpoint) FailNext(status int, body string, times int) {
	e.mu.Lock()
	for range times {
		e.failWith = append(e.failWith, failure{status, body})
	}
	e.mu.Unlock()
}

// Requests returns what the stand-in answered, in order.
func (e *Endpoint) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.requests...)
}

// Issued counts the credentials handed out.
func (e *Endpoint) Issued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.issued
}

// RefusedHandshakes returns why the stand-in refused handshakes.
func (e *Endpoint) RefusedHandshakes() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.handshakes...)
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request{Path: r.URL.Path, ServerName: r.TLS.ServerName}
	req.ThingName = r.Header.Get("x-amzn-iot-thingname")
	_, req.HasThing = r.Header["X-Amzn-Iot-Thingname"]
	if len(r.TLS.PeerCertificates) > 0 {
		req.DeviceID = deviceID(r.TLS.PeerCertificates[0])
	}
	status, errType, body := e.answer(r, req)
	e.mu.Lock()
	req.Status = status
	e.requests = append(e.requests, req)
	e.mu.Unlock()
	w.Header().Set("Date", e.Now().UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-RequestId", fmt.Sprintf("0e1f2a3b-%04d", len(e.Requests())))
	if errType != "" {
		w.Header().Set("x-amzn-ErrorType", errType)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func message(m string) []byte {
	b, _ := json.Marshal(map[string]string{"message": m})
	return b
}

// answer follows the order the service checks in, as recorded from it:
// the certificate, the thing, the policy, the role alias, the role.
func (e *Endpoint) answer(r *http.Request, req Request) (status int, errType string, body []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.failWith) > 0 {
		f := e.failWith[0]
		e.failWith = e.failWith[1:]
		return f.status, "", []byte(f.body)
	}
	alias, ok := strings.CutPrefix(r.URL.Path, "/role-aliases/")
	if ok {
		alias, ok = strings.CutSuffix(alias, "/credentials")
	}
	if e.dataPlane || !ok || r.Method != http.MethodGet || strings.Contains(alias, "/") {
		return 404, "", []byte(`{"message":"Not Found","traceId":"5f1d2c3b-aaaa-bbbb-cccc-0123456789ab"}`)
	}
	d := e.devices[req.DeviceID]
	if d == nil || d.elsewhere {
		return 403, "AccessDeniedException", message("Certificate is invalid on this endpoint")
	}
	if req.HasThing && !d.things[req.ThingName] {
		return 403, "AccessDeniedException", message("Invalid thing name passed")
	}
	if !d.aliases["*"] && !d.aliases[alias] {
		return 403, "AccessDeniedException", message("Access Denied")
	}
	a, ok := e.aliases[alias]
	switch {
	case !ok:
		return 404, "ResourceNotFoundException", message("Role alias does not exist")
	case a.RoleMissing:
		return 400, "InvalidRequestException", message("Unable to assume the role, or the role to assume does not exist")
	case a.TooLong:
		return 400, "InvalidRequestException", message("The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role")
	}
	e.issued++
	var c Credentials
	if e.issue != nil {
		c = e.issue(e.issued)
	} else {
		c = Credentials{AccessKeyID: fmt.Sprintf("ASIASTANDIN%09d", e.issued), SecretAccessKey: fmt.Sprintf("secret-%d", e.issued),
			SessionToken: fmt.Sprintf("token-%d", e.issued)}
	}
	if c.Expiration.IsZero() {
		life := a.Lifetime
		if life == 0 {
			life = time.Hour
		}
		c.Expiration = e.Now().Add(life)
	}
	b, _ := json.Marshal(map[string]any{"credentials": map[string]string{
		"accessKeyId": c.AccessKeyID, "secretAccessKey": c.SecretAccessKey, "sessionToken": c.SessionToken,
		"expiration": c.Expiration.UTC().Format(time.RFC3339),
	}})
	return 200, "", b
}
