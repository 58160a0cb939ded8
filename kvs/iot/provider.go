// Package iot gets temporary AWS credentials for a device from the AWS IoT
// credentials provider: a GET of /role-aliases/ALIAS/credentials over
// mutual TLS with the device's X.509 certificate, so that a camera in a
// fleet needs no access keys. Provider implements aws.CredentialsProvider;
// NewCredentialsCache wraps it so that the credentials are renewed before
// they expire, and kept through a passing failure to renew them.
//
//	creds, err := iot.NewCredentialsCache(iot.Config{
//		Endpoint:  "xxxx.credentials.iot.eu-west-1.amazonaws.com",
//		CertFile:  "/etc/kvsgo/device.pem.crt",
//		KeyFile:   "/etc/kvsgo/private.pem.key",
//		RoleAlias: "kvsgo-camera",
//		ThingName: "porch",
//	})
//	cfg, err := config.LoadDefaultConfig(ctx, config.WithCredentialsProvider(creds))
package iot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Config says where and how to get credentials.
type Config struct {
	// Endpoint is the account's credentials endpoint, as `aws iot
	// describe-endpoint --endpoint-type iot:CredentialProvider` prints it
	// (a host name, host:port, or https://host[:port]).
	Endpoint string
	// CertFile and KeyFile are the device certificate and its private key
	// (PEM). They are read again at every renewal, so a certificate
	// replaced on disk is taken up without a restart.
	CertFile, KeyFile string
	// CAFile holds the roots the endpoint's certificate must chain to
	// (PEM, e.g. AmazonRootCA1.pem); empty: the system's.
	CAFile string
	// RoleAlias names the IAM role the credentials are for.
	RoleAlias string
	// ThingName, when set, is sent as x-amzn-iot-thingname: the service
	// checks that the thing is attached to the certificate, and policies
	// can use ${credentials-iot:ThingName}.
	ThingName string

	Timeout time.Duration    // one request [20 s]
	Logger  *slog.Logger     // warnings: a renewal that failed, a wrong clock [none]
	Now     func() time.Time // [time.Now]
	// DialContext connects to the endpoint [net.Dialer]; proxies from the
	// environment (HTTPS_PROXY) are used either way.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ExpiryWindow is how long before they expire NewCredentialsCache renews
// credentials (less up to a fifth, at random, so that a fleet started
// together does not renew together).
const ExpiryWindow = 5 * time.Minute

// Retrying a failed renewal: every keepFor while the credentials in hand
// last more than keepMin.
const (
	keepFor = 30 * time.Second
	keepMin = 2 * time.Minute
)

// Provider gets credentials from the endpoint: one request per Retrieve.
// Use it through NewCredentialsCache, or wrap it in aws.NewCredentialsCache.
type Provider struct {
	cfg    Config
	host   string // host[:port]
	url    string
	client *http.Client
	log    *slog.Logger

	mu   sync.Mutex
	pair *tls.Certificate // last good key pair read from the files
	last aws.Credentials  // last credentials the endpoint gave
	kept time.Time        // Expires of credentials kept after a failed renewal
}

// New checks the configuration and reads the files; it does not contact
// the endpoint.
func New(cfg Config) (*Provider, error) {
	host, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.RoleAlias == "" {
		return nil, fmt.Errorf("no role alias given: the AWS IoT role alias whose IAM role may use Kinesis Video Streams (`aws iot list-role-aliases`)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pair, err := loadKeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	roots, err := loadRoots(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, host: host, pair: &pair, log: cfg.Logger,
		url: "https://" + host + "/role-aliases/" + url.PathEscape(cfg.RoleAlias) + "/credentials"}
	dial := cfg.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	p.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:       http.ProxyFromEnvironment,
			DialContext: dial,
			TLSClientConfig: &tls.Config{
				RootCAs:              roots,
				MinVersion:           tls.VersionTLS12,
				Time:                 cfg.Now,
				GetClientCertificate: p.clientCertificate,
			},
			TLSHandshakeTimeout: 10 * time.Second,
			// One request in an hour: a new connection each time, with the
			// certificate as it is on disk now.
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if leaf := pair.Leaf; cfg.Now().After(leaf.NotAfter) {
		p.log.Warn("the AWS IoT device certificate has expired", "file", cfg.CertFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return p, nil
}

// NewCredentialsCache returns a Provider wrapped in an aws.CredentialsCache
// that renews the credentials ExpiryWindow before they expire. The SDK's
// config.WithCredentialsProvider takes it as it is.
func NewCredentialsCache(cfg Config) (*aws.CredentialsCache, error) {
	p, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = ExpiryWindow
		o.ExpiryWindowJitterFrac = 0.2
	}), nil
}

func (p *Provider) now() time.Time { return p.cfg.Now() }

// clientCertificate gives the handshake the key pair as it is on disk now,
// or the last good one if the files cannot be read (being replaced, say).
func (p *Provider) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	pair, err := loadKeyPair(p.cfg.CertFile, p.cfg.KeyFile)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.log.Warn("using the AWS IoT device certificate read before", "err", err)
		return p.pair, nil
	}
	if !pair.Leaf.Equal(p.pair.Leaf) {
		p.log.Info("the AWS IoT device certificate changed on disk; using the new one",
			"file", p.cfg.CertFile, "certificate_id", CertificateID(pair.Leaf))
	}
	p.pair = &pair
	return p.pair, nil
}

func (p *Provider) leaf() *x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pair.Leaf
}

// Retrieve asks the endpoint for credentials. Errors are *Error.
func (p *Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return aws.Credentials{}, err
	}
	if p.cfg.ThingName != "" {
		req.Header.Set("x-amzn-iot-thingname", p.cfg.ThingName)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return aws.Credentials{}, p.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return aws.Credentials{}, p.transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return aws.Credentials{}, p.statusError(resp.StatusCode, body)
	}
	creds, err := parseCredentials(body)
	if err != nil {
		return aws.Credentials{}, &Error{Endpoint: p.host, Err: err,
			Cause: fmt.Sprintf("this does not answer like an AWS IoT credentials endpoint: check it (`%s`)", describeEndpoint)}
	}
	p.checkClock(resp.Header.Get("Date"), creds.Expires)
	p.mu.Lock()
	p.last, p.kept = creds, time.Time{}
	p.mu.Unlock()
	return creds, nil
}

// checkClock warns when this device's clock is far from AWS's: requests
// signed with it are refused, and credentials seem to expire at the wrong
// time.
func (p *Provider) checkClock(date string, expires time.Time) {
	now := p.now()
	server, err := http.ParseTime(date)
	if err != nil {
		if !expires.After(now) {
			p.log.Warn("the AWS IoT credentials expire before this device's clock's now: is the clock right? (timedatectl)",
				"expires", expires.UTC().Format(time.RFC3339), "now", now.UTC().Format(time.RFC3339))
		}
		return
	}
	if skew := now.Sub(server); skew > 5*time.Minute || skew < -5*time.Minute {
		p.log.Warn("this device's clock is off by more than 5 minutes: AWS refuses requests signed with it; set the time (timedatectl set-ntp true)",
			"device", now.UTC().Format(time.RFC3339), "aws", server.UTC().Format(time.RFC3339), "off_by", skew.Round(time.Second).String())
	}
}

// HandleFailToRefresh is called by aws.CredentialsCache when a renewal
// fails. After a failure that may pass (network, a busy endpoint) it keeps
// the credentials in hand while they last more than two minutes, and the
// cache tries again 30 s later; a connection signed with them is renewed
// at that pace too. Anything else is returned as it is.
func (p *Provider) HandleFailToRefresh(_ context.Context, _ aws.Credentials, err error) (aws.Credentials, error) {
	var e *Error
	if !errors.As(err, &e) || !e.Temporary {
		return aws.Credentials{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.last.HasKeys() || p.last.Expires.Sub(now) <= keepMin {
		return aws.Credentials{}, err
	}
	kept := p.last
	kept.Expires = now.Add(keepFor)
	p.kept = kept.Expires
	p.log.Warn("cannot renew the AWS IoT credentials; using the current ones until they are renewed",
		"err", err, "expire", p.last.Expires.UTC().Format(time.RFC3339), "retry_in", keepFor.String())
	return kept, nil
}

// AdjustExpiresBy is called by aws.CredentialsCache to renew credentials
// early. Credentials kept after a failed renewal already carry the time of
// the next try.
func (p *Provider) AdjustExpiresBy(creds aws.Credentials, d time.Duration) (aws.Credentials, error) {
	p.mu.Lock()
	kept := p.kept
	p.mu.Unlock()
	if !creds.CanExpire || (!kept.IsZero() && creds.Expires.Equal(kept)) {
		return creds, nil
	}
	creds.Expires = creds.Expires.Add(d)
	return creds, nil
}

var (
	_ aws.CredentialsProvider                       = (*Provider)(nil)
	_ aws.HandleFailRefreshCredentialsCacheStrategy = (*Provider)(nil)
	_ aws.AdjustExpiresByCredentialsCacheStrategy   = (*Provider)(nil)
)
