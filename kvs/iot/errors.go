package iot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Error is a failure to get credentials from the endpoint, with its likely
// cause and what to do in plain words.
type Error struct {
	Endpoint   string
	StatusCode int    // the endpoint's HTTP status; 0 when it did not answer
	Message    string // the endpoint's own message, e.g. "Access Denied"
	Cause      string // the likely cause and the fix
	Err        error  // the underlying error, when it did not answer
	// Temporary failures (network, a busy or failing endpoint) may pass on
	// their own: they are worth retrying.
	Temporary bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "AWS IoT credentials from %s: ", e.Endpoint)
	switch {
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "HTTP %d %q", e.StatusCode, e.Message)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	if e.Cause != "" {
		b.WriteString(": ")
		b.WriteString(e.Cause)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// RetryableError tells aws-sdk-go-v2's retryer, and kvs.Producer, whether
// trying again may help.
func (e *Error) RetryableError() bool { return e.Temporary }

// statusError explains an HTTP error answer. The messages are the ones the
// service sends; the order of its checks is: the certificate, the thing
// name, the policy, the role alias, the role.
func (p *Provider) statusError(status int, body []byte) *Error {
	e := &Error{Endpoint: p.host, StatusCode: status, Message: parseMessage(body)}
	msg := strings.ToLower(e.Message)
	alias, thing := p.cfg.RoleAlias, p.cfg.ThingName
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		e.Temporary = true
		e.Cause = "the endpoint is busy or failing; trying again"
	case strings.Contains(msg, "certificate is invalid"):
		e.Cause = fmt.Sprintf("the device certificate is not valid on this endpoint: it is registered in another account or region, or is inactive. "+
			"Check it with `aws iot describe-certificate --certificate-id %s` in the region it was registered in, and use that region's endpoint (`%s`)",
			p.certID(), describeEndpoint)
	case strings.Contains(msg, "thing name"):
		e.Cause = fmt.Sprintf("the thing %q is not attached to this certificate, or does not exist: attach it with "+
			"`aws iot attach-thing-principal --thing-name %s --principal CERTIFICATE_ARN`, or give the thing the certificate belongs to "+
			"(`aws iot list-principal-things --principal CERTIFICATE_ARN`)", thing, thing)
	case strings.Contains(msg, "role alias does not exist"):
		e.Cause = fmt.Sprintf("there is no role alias %q in this account and region (`aws iot list-role-aliases`)", alias)
	case strings.Contains(msg, "unable to assume"):
		e.Cause = fmt.Sprintf("role alias %q points to an IAM role that does not exist or does not trust credentials.iot.amazonaws.com: "+
			"the role's trust policy must let that service call sts:AssumeRole (`aws iot describe-role-alias --role-alias %s` names the role)", alias, alias)
	case strings.Contains(msg, "credentialdurationseconds"):
		e.Cause = fmt.Sprintf("role alias %q asks for credentials that last longer than its IAM role allows: lower the alias's "+
			"credentialDurationSeconds (`aws iot update-role-alias`) or raise the role's MaxSessionDuration", alias)
	case status == http.StatusForbidden:
		e.Cause = fmt.Sprintf("the certificate's AWS IoT policy does not allow iot:AssumeRoleWithCertificate on role alias %q: "+
			"attach a policy to the certificate allowing it on arn:aws:iot:%s:ACCOUNT:rolealias/%s", alias, orRegion(RegionFromEndpoint(p.host)), alias)
	case status == http.StatusNotFound:
		e.Cause = fmt.Sprintf("this is not an AWS IoT credentials endpoint: find yours with `%s`", describeEndpoint)
	}
	return e
}

// transportError explains a request that got no answer: refused
// certificates, an endpoint that cannot be verified, the network.
func (p *Provider) transportError(err error) *Error {
	// The URL says nothing the endpoint's name does not.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	e := &Error{Endpoint: p.host, Err: err}
	var (
		opErr      *net.OpError
		dnsErr     *net.DNSError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, context.Canceled):
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// The endpoint sent a TLS alert: it refused the certificate.
		e.Err = opErr.Err
		e.Cause = fmt.Sprintf("the endpoint refused the device certificate: it is not registered with AWS IoT in this account and region, "+
			"or it is inactive or revoked. Check it with `aws iot describe-certificate --certificate-id %s`%s", p.certID(), p.certValidity())
	case errors.As(err, &unknownCA):
		roots := "the system's trusted roots"
		if p.cfg.CAFile != "" {
			roots = "the CA file " + p.cfg.CAFile
		}
		e.Cause = fmt.Sprintf("the endpoint's certificate is not signed by a CA in %s: give Amazon Root CA 1 (%s) as the CA file", roots, amazonRootCA)
	case errors.As(err, &hostErr):
		e.Cause = fmt.Sprintf("the endpoint's certificate is not made out to %s: check the endpoint (`%s`)", hostErr.Host, describeEndpoint)
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		e.Cause = fmt.Sprintf("the endpoint's certificate is not valid at this device's time, %s: is the clock right? (`timedatectl`; set-ntp true)",
			p.now().UTC().Format(time.RFC3339))
	case errors.As(err, &verifyErr):
		e.Cause = "the endpoint's certificate cannot be verified"
	case errors.As(err, &dnsErr):
		e.Temporary = true
		e.Cause = "cannot look up the endpoint's name: check the endpoint and the network; trying again"
	default:
		// Refused or timed-out connections, resets: the network, for now.
		e.Temporary = true
		e.Cause = "cannot reach the endpoint; trying again"
	}
	return e
}

func (p *Provider) certID() string {
	if leaf := p.leaf(); leaf != nil {
		return CertificateID(leaf)
	}
	return "ID"
}

// certValidity says when the certificate's validity is the likely cause.
func (p *Provider) certValidity() string {
	leaf := p.leaf()
	if leaf == nil {
		return ""
	}
	now := p.now()
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("; it expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("; it is valid only from %s: is this device's clock right? (it says %s)",
			leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return ""
}
