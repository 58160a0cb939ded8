package perf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
)

// Credentials the harness signs with. A local `kvsgo serve` without
// --access-key accepts any well-formed signature.
const (
	AccessKey = "kvsgo-bench"
	SecretKey = "kvsgo-bench-secret"
	Region    = "us-east-1"
)

// ControlPlane creates streams on a server for the harness, through
// aws-sdk-go-v2, as any client would.
type ControlPlane struct{ c *kinesisvideo.Client }

// NewControlPlane returns a client of the control plane at endpoint.
func NewControlPlane(endpoint string) *ControlPlane {
	return &ControlPlane{c: kinesisvideo.New(kinesisvideo.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})}
}

// CreateStream creates a stream that keeps data for an hour, so that
// PERSISTED acks flow, and waits until it is ACTIVE (a new stream is
// CREATING for a while, and PutMedia to it is refused, as with the real
// service); a stream that exists already is fine.
func (cp *ControlPlane) CreateStream(ctx context.Context, name string) error {
	_, err := cp.c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{
		StreamName: aws.String(name), DataRetentionInHours: aws.Int32(1), MediaType: aws.String("video/h264"),
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("creating stream %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		out, err := cp.c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("waiting for stream %s to become ACTIVE: %w", name, err)
		}
		if out.StreamInfo != nil && out.StreamInfo.Status == types.StatusActive {
			return nil
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("stream %s did not become ACTIVE: %w", name, ctx.Err())
		}
	}
}

// PutMediaEndpoint returns the stream's PutMedia endpoint (GetDataEndpoint).
func (cp *ControlPlane) PutMediaEndpoint(ctx context.Context, name string) (string, error) {
	out, err := cp.c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(name), APIName: types.APINamePutMedia})
	if err != nil {
		return "", fmt.Errorf("GetDataEndpoint for %s: %w", name, err)
	}
	return strings.TrimSuffix(aws.ToString(out.DataEndpoint), "/"), nil
}

// Env is the environment a child kvsgo needs to sign with the harness's
// credentials and nothing else: no profile, no instance metadata.
func Env(base []string) []string {
	var env []string
	for _, kv := range base {
		if strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "AWS_ACCESS_KEY_ID="+AccessKey, "AWS_SECRET_ACCESS_KEY="+SecretKey, "AWS_REGION="+Region,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
}

// CheckLoopback refuses a URL whose host is not this machine's loopback
// address: the harness puts hundreds of streams of load on what it is
// pointed at, and must never do that to a server elsewhere (or to AWS).
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL like http://127.0.0.1:4567", rawURL)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not on this machine's loopback address: the benchmark harness only loads servers on 127.0.0.1", rawURL)
}
