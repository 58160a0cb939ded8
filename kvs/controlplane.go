package kvs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
)

// StreamSetup is what the producer asks of the control plane before it
// streams.
type StreamSetup struct {
	Name string
	// Create the stream when it does not exist.
	Create bool
	// RetentionHours for a created stream; with 0 the service sends no
	// PERSISTED acks.
	RetentionHours int32
	MediaType      string
	DeviceName     string
}

// ControlPlane is the part of the Kinesis Video control plane the
// producer needs.
type ControlPlane interface {
	// PrepareStream makes sure the stream exists and returns its PutMedia
	// endpoint and its retention.
	PrepareStream(ctx context.Context, s StreamSetup) (endpoint string, retentionHours int32, err error)
}

// SDKControlPlane calls the service through aws-sdk-go-v2.
type SDKControlPlane struct {
	Client *kinesisvideo.Client
	// ActiveTimeout bounds the wait for a new stream to become ACTIVE;
	// 2 minutes when zero.
	ActiveTimeout time.Duration
}

// NewSDKControlPlane builds a control-plane client from an AWS config;
// endpoint, when set, overrides the service address (e.g. kvsgo serve).
func NewSDKControlPlane(cfg aws.Config, endpoint string, httpClient *http.Client) *SDKControlPlane {
	return &SDKControlPlane{Client: kinesisvideo.NewFromConfig(cfg, func(o *kinesisvideo.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if httpClient != nil {
			o.HTTPClient = httpClient
		}
	})}
}

// PrepareStream implements ControlPlane.
func (c *SDKControlPlane) PrepareStream(ctx context.Context, s StreamSetup) (string, int32, error) {
	var retention int32
	// The endpoint is asked for beside DescribeStream: for a stream that
	// exists and is ACTIVE, as it is at nearly every start, that saves a
	// round trip to the region. Otherwise it is asked for again below.
	early := make(chan endpointResult, 1)
	go func() { early <- c.dataEndpoint(ctx, s.Name) }()
	out, err := c.Client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(s.Name)})
	ep := <-early
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) && s.Create:
		in := &kinesisvideo.CreateStreamInput{StreamName: aws.String(s.Name), DataRetentionInHours: aws.Int32(s.RetentionHours)}
		if s.MediaType != "" {
			in.MediaType = aws.String(s.MediaType)
		}
		if s.DeviceName != "" {
			in.DeviceName = aws.String(s.DeviceName)
		}
		if _, err := c.Client.CreateStream(ctx, in); err != nil {
			var inUse *types.ResourceInUseException
			if !errors.As(err, &inUse) { // someone else created it meanwhile: fine
				return "", 0, describeAPIError("creating stream "+s.Name, err)
			}
		}
		// A new stream is CREATING for a while; its endpoints answer once
		// it is ACTIVE.
		info, err := c.waitActive(ctx, s.Name)
		if err != nil {
			return "", 0, err
		}
		retention = aws.ToInt32(info.DataRetentionInHours)
	case errors.As(err, &nf):
		return "", 0, fmt.Errorf("%w: %q; create it, or drop --no-create so that kvsgo creates it", ErrNoStream, s.Name)
	case err != nil:
		return "", 0, describeAPIError("looking up stream "+s.Name, err)
	default:
		info := out.StreamInfo
		if info != nil && info.Status == types.StatusDeleting {
			return "", 0, fmt.Errorf("%w: %q", ErrStreamDeleting, s.Name)
		}
		if info != nil && info.Status == types.StatusCreating {
			if info, err = c.waitActive(ctx, s.Name); err != nil {
				return "", 0, err
			}
			ep.err = errors.New("asked before the stream was ACTIVE")
		}
		if info != nil {
			retention = aws.ToInt32(info.DataRetentionInHours)
		}
	}
	if ep.err != nil {
		// Created or waited for meanwhile, or a passing failure: once more.
		if ep = c.dataEndpoint(ctx, s.Name); ep.err != nil {
			return "", 0, describeAPIError("getting the PutMedia endpoint", ep.err)
		}
	}
	return ep.url, retention, nil
}

type endpointResult struct {
	url string
	err error
}

// dataEndpoint asks for the stream's PutMedia endpoint.
func (c *SDKControlPlane) dataEndpoint(ctx context.Context, name string) endpointResult {
	out, err := c.Client.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(name), APIName: types.APINamePutMedia})
	if err != nil {
		return endpointResult{err: err}
	}
	return endpointResult{url: strings.TrimSuffix(aws.ToString(out.DataEndpoint), "/")}
}

// waitActive polls DescribeStream until the stream is ACTIVE (or UPDATING,
// which streams too), as the service's clients must after CreateStream.
func (c *SDKControlPlane) waitActive(parent context.Context, name string) (*types.StreamInfo, error) {
	limit := c.ActiveTimeout
	if limit == 0 {
		limit = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	// DescribeStream is limited to 5 calls a second per stream.
	delay := 200 * time.Millisecond
	status := "not visible yet"
	for {
		out, err := c.Client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf):
			// Just created: not visible everywhere yet.
		case err != nil && ctx.Err() == nil:
			return nil, describeAPIError("waiting for stream "+name+" to become ACTIVE", err)
		case err == nil && out.StreamInfo != nil:
			switch out.StreamInfo.Status {
			case types.StatusActive, types.StatusUpdating:
				return out.StreamInfo, nil
			case types.StatusDeleting:
				return nil, fmt.Errorf("%w: %q", ErrStreamDeleting, name)
			}
			status = string(out.StreamInfo.Status)
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil, parent.Err()
			}
			return nil, fmt.Errorf("stream %q is still %s after %s; check it with aws kinesisvideo describe-stream", name, status, limit)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// Set-up errors that retrying cannot fix.
var (
	ErrNoStream       = errors.New("the stream does not exist")
	ErrStreamDeleting = errors.New("the stream is being deleted")
)

// ErrAuth marks refused credentials: retrying cannot help.
var ErrAuth = errors.New("credentials refused")

// describeAPIError turns an AWS API error into plain words, marking
// credential problems with ErrAuth.
func describeAPIError(what string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
			"MissingAuthenticationTokenException", "AccessDeniedException", "NotAuthorizedException",
			"ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch":
			return fmt.Errorf("%s: %w: %s: %s (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile, and the clock)",
				what, ErrAuth, ae.ErrorCode(), ae.ErrorMessage())
		}
		return fmt.Errorf("%s: %s: %s", what, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("%s: %w", what, err)
}
