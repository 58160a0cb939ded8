// Package sigv4 verifies AWS Signature Version 4 on requests to the local
// server, accepting exactly what real clients send: the C producer's
// empty-payload hash for streaming PutMedia with `connection` and
// `transfer-encoding` among the signed headers, the Java SDK's
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD, and the Host header as received.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Errors, each mapped by the server to the AWS error the real service
// returns.
var (
	ErrMissingAuth   = errors.New("missing authentication token")
	ErrMalformedAuth = errors.New("malformed Authorization header")
	ErrUnknownKey    = errors.New("unknown access key")
	ErrSignature     = errors.New("signature does not match")
	ErrExpired       = errors.New("signature expired")
)

const (
	algorithm = "AWS4-HMAC-SHA256"
	// EmptyHash is the SHA-256 of an empty payload, what the C producer
	// signs for streaming PutMedia.
	EmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// StreamingPayload is the payload hash the Java SDK signs for PutMedia.
	StreamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	// UnsignedPayload is accepted as it is by AWS services that stream.
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	timeFormat      = "20060102T150405Z"
)

// Authorization is the parsed Authorization header.
type Authorization struct {
	AccessKey     string
	Date          string // yyyymmdd of the credential scope
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// ParseAuthorization parses an `AWS4-HMAC-SHA256 Credential=…,
// SignedHeaders=…, Signature=…` header value.
func ParseAuthorization(v string) (Authorization, error) {
	var a Authorization
	rest, ok := strings.CutPrefix(v, algorithm+" ")
	if !ok {
		return a, fmt.Errorf("%w: not %s", ErrMalformedAuth, algorithm)
	}
	var cred, signed string
	for part := range strings.SplitSeq(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, fmt.Errorf("%w: %q", ErrMalformedAuth, part)
		}
		switch k {
		case "Credential":
			cred = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			a.Signature = val
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || scope[0] == "" || len(scope[1]) != 8 {
		return a, fmt.Errorf("%w: credential %q", ErrMalformedAuth, cred)
	}
	a.AccessKey, a.Date, a.Region, a.Service = scope[0], scope[1], scope[2], scope[3]
	if signed == "" || len(a.Signature) != 64 {
		return a, fmt.Errorf("%w: missing SignedHeaders or Signature", ErrMalformedAuth)
	}
	if _, err := hex.DecodeString(a.Signature); err != nil {
		return a, fmt.Errorf("%w: signature is not hex", ErrMalformedAuth)
	}
	a.SignedHeaders = strings.Split(signed, ";")
	for _, h := range a.SignedHeaders {
		if h == "" || h != strings.ToLower(h) {
			return a, fmt.Errorf("%w: signed header %q", ErrMalformedAuth, h)
		}
	}
	return a, nil
}

// Verifier checks request signatures.
type Verifier struct {
	// Secrets maps access key IDs to secret keys. When empty, any
	// well-formed signature is accepted.
	Secrets map[string]string
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// MaxSkew is how far X-Amz-Date may be from now; 5 minutes when zero.
	MaxSkew time.Duration
}

// Verify checks r's signature. payloadHash is the hex SHA-256 of the body
// the server read, or "" for a streaming body it cannot hash up front; then
// the hash the client declared (x-amz-content-sha256), or the empty
// payload's hash, is used.
func (v *Verifier) Verify(r *http.Request, payloadHash string) (Authorization, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Authorization{}, ErrMissingAuth
	}
	a, err := ParseAuthorization(h)
	if err != nil {
		return a, err
	}
	date := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(timeFormat, date)
	if err != nil {
		return a, fmt.Errorf("%w: X-Amz-Date %q", ErrMalformedAuth, date)
	}
	if !strings.HasPrefix(date, a.Date) {
		return a, fmt.Errorf("%w: credential date %s does not match X-Amz-Date %s", ErrSignature, a.Date, date)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew == 0 {
		skew = 5 * time.Minute
	}
	if d := now().Sub(t); d > skew || d < -skew {
		return a, fmt.Errorf("%w: request time %s is %s from the server's clock %s (more than %s)",
			ErrExpired, t.UTC().Format(timeFormat), d.Round(time.Second), now().UTC().Format(timeFormat), skew)
	}
	if len(v.Secrets) == 0 {
		return a, nil
	}
	secret, ok := v.Secrets[a.AccessKey]
	if !ok {
		return a, fmt.Errorf("%w: %s", ErrUnknownKey, a.AccessKey)
	}
	hashes := []string{payloadHash}
	if payloadHash == "" {
		hashes = hashes[:0]
		if declared := r.Header.Get("X-Amz-Content-Sha256"); declared != "" {
			hashes = append(hashes, declared)
		}
		hashes = append(hashes, EmptyHash)
	}
	key := SigningKey(secret, a.Date, a.Region, a.Service)
	for _, ph := range hashes {
		creq := CanonicalRequest(r, a.SignedHeaders, ph)
		sts := StringToSign(date, a.Date+"/"+a.Region+"/"+a.Service+"/aws4_request", creq)
		if hmac.Equal([]byte(hex.EncodeToString(hmacSHA256(key, sts))), []byte(a.Signature)) {
			return a, nil
		}
	}
	return a, ErrSignature
}

// SigningKey derives the SigV4 signing key.
func SigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// StringToSign builds the string to sign from a canonical request.
func StringToSign(amzDate, scope, canonicalRequest string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

// CanonicalRequest builds the SigV4 canonical request of r over the given
// signed headers. Go's server moves Host and Transfer-Encoding out of
// r.Header; they are put back here as the client sent them.
func CanonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalPath(r.URL))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.Query()))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "transfer-encoding":
		vals = r.TransferEncoding
		if len(vals) == 0 {
			vals = r.Header.Values(name)
		}
	case "content-length":
		vals = r.Header.Values(name)
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{fmt.Sprint(r.ContentLength)}
		}
	default:
		vals = r.Header.Values(name)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

func canonicalPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// awsEscape percent-encodes everything but unreserved characters.
func awsEscape(s string) string {
	return strings.NewReplacer("+", "%20", "%7E", "~").Replace(url.QueryEscape(s))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
