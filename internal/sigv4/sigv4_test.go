package sigv4

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/mediatest"
)

const (
	kvssinkKey    = "AKIDEXAMPLE"
	kvssinkSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
)

// capture reads one recorded kvssink request: its head as a request, its
// body's hash (control plane) or "" (PutMedia, streamed).
func capture(t *testing.T, name string) (*http.Request, string) {
	t.Helper()
	head, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/"+name+".head"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatal(err)
	}
	if name == "04_putMedia" {
		return r, ""
	}
	body, err := os.ReadFile(mediatest.Reference(t, "kvssink-capture/"+name+".body"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	return r, hex.EncodeToString(sum[:])
}

func clockAt(r *http.Request) func() time.Time {
	t, _ := time.Parse(timeFormat, r.Header.Get("X-Amz-Date"))
	return func() time.Time { return t.Add(30 * time.Second) }
}

// TestKVSSinkSignatures verifies every request AWS's kvssink signed, with
// the secret it used.
func TestKVSSinkSignatures(t *testing.T) {
	for _, name := range []string{"01_describeStream", "02_createStream", "03_getDataEndpoint", "04_putMedia"} {
		t.Run(name, func(t *testing.T) {
			r, hash := capture(t, name)
			v := &Verifier{Secrets: map[string]string{kvssinkKey: kvssinkSecret}, Now: clockAt(r)}
			a, err := v.Verify(r, hash)
			if err != nil {
				t.Fatalf("kvssink's own signature refused: %v", err)
			}
			if a.Service != "kinesisvideo" || a.Region != "us-east-1" || a.AccessKey != kvssinkKey {
				t.Fatalf("parsed %+v", a)
			}

			wrong := &Verifier{Secrets: map[string]string{kvssinkKey: "not-the-secret"}, Now: clockAt(r)}
			if _, err := wrong.Verify(r, hash); !errors.Is(err, ErrSignature) {
				t.Fatalf("wrong secret: %v", err)
			}
			other := &Verifier{Secrets: map[string]string{"AKIDOTHER": kvssinkSecret}, Now: clockAt(r)}
			if _, err := other.Verify(r, hash); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("unknown key id: %v", err)
			}
			late := &Verifier{Secrets: v.Secrets, Now: func() time.Time { return clockAt(r)().Add(6 * time.Minute) }}
			if _, err := late.Verify(r, hash); !errors.Is(err, ErrExpired) {
				t.Fatalf("6 minutes late: %v", err)
			}
			r.Header.Set("User-Agent", "tampered")
			if _, err := v.Verify(r, hash); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered signed header: %v", err)
			}
		})
	}
}

func TestHostWithAndWithoutPort(t *testing.T) {
	r, _ := capture(t, "04_putMedia")
	v := &Verifier{Secrets: map[string]string{kvssinkKey: kvssinkSecret}, Now: clockAt(r)}
	r.Host = "127.0.0.1:18099" // what the port-less Host would be if a proxy "fixed" it
	if _, err := v.Verify(r, ""); !errors.Is(err, ErrSignature) {
		t.Fatalf("Host changed after signing still verified: %v", err)
	}
}

// TestGoSDKSigner: requests signed by aws-sdk-go-v2's signer verify, with
// a hashed JSON body and with a streaming payload.
func TestGoSDKSigner(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "AKIDGO", SecretAccessKey: "gosecret", SessionToken: "tok"}
	v := &Verifier{Secrets: map[string]string{"AKIDGO": "gosecret"}, Now: func() time.Time { return now }}
	signer := v4.NewSigner()

	body := []byte(`{"StreamName":"cam"}`)
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4567/describeStream?b=2&a=x y~", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if err := signer.SignHTTP(t.Context(), creds, r, hash, "kinesisvideo", "eu-west-1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r, hash); err != nil {
		t.Fatalf("SDK-signed JSON request: %v", err)
	}

	r, _ = http.NewRequest(http.MethodPost, "http://localhost:4567/putMedia", strings.NewReader("stream"))
	r.Header.Set("X-Amz-Content-Sha256", StreamingPayload)
	r.Header.Set("x-amzn-stream-name", "cam")
	if err := signer.SignHTTP(t.Context(), creds, r, StreamingPayload, "kinesisvideo", "eu-west-1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r, ""); err != nil {
		t.Fatalf("SDK-signed streaming request: %v", err)
	}
}

func TestParseAuthorizationRejects(t *testing.T) {
	for _, h := range []string{
		"",
		"AWS4-HMAC-SHA1 Credential=a/20261125/r/s/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("0", 64),
		"AWS4-HMAC-SHA256 Credential=a/2026/r/s/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("0", 64),
		"AWS4-HMAC-SHA256 Credential=a/20261125/r/s/aws4_request, SignedHeaders=host, Signature=xyz",
		"AWS4-HMAC-SHA256 Credential=a/20261125/r/s/aws4_request, SignedHeaders=, Signature=" + strings.Repeat("0", 64),
		"AWS4-HMAC-SHA256 Credential=a/20261125/r/s/aws4_request, SignedHeaders=Host, Signature=" + strings.Repeat("0", 64),
		"AWS4-HMAC-SHA256 garbage",
	} {
		if _, err := ParseAuthorization(h); !errors.Is(err, ErrMalformedAuth) {
			t.Errorf("%q: %v", h, err)
		}
	}
}

// FuzzParseAuthorization: any header value from the network parses or is
// refused, never panics, and a parsed one has a well-formed scope.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-east-1/kinesisvideo/aws4_request, SignedHeaders=host;user-agent;x-amz-date, Signature=14e463e926bfb96290d4375b15ef758971057cdc0a30079caa20163f8771d345")
	f.Add("AWS4-HMAC-SHA256 Credential=/,=,")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			return
		}
		if a.AccessKey == "" || len(a.Date) != 8 || len(a.Signature) != 64 || len(a.SignedHeaders) == 0 {
			t.Fatalf("accepted a malformed header: %+v", a)
		}
		r, _ := http.NewRequest(http.MethodPost, "http://h/", nil)
		r.Header.Set("Authorization", h)
		r.Header.Set("X-Amz-Date", a.Date+"T000000Z")
		v := &Verifier{Secrets: map[string]string{a.AccessKey: "s"}, Now: func() time.Time {
			tm, _ := time.Parse("20060102", a.Date)
			return tm
		}}
		_, _ = v.Verify(r, EmptyHash)
	})
}
