package kvs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
)

// DataEndpoint implements DataEndpoints: GetDataEndpoint for apiName
// (GET_MEDIA, LIST_FRAGMENTS, …).
func (c *SDKControlPlane) DataEndpoint(ctx context.Context, stream, apiName string) (string, error) {
	out, err := c.Client.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(stream), APIName: types.APIName(apiName)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return "", fmt.Errorf("%w: %q (ResourceNotFoundException: %s); check the name and the region, e.g. with: aws kinesisvideo list-streams",
			ErrNoStream, stream, nf.ErrorMessage())
	}
	if err != nil {
		return "", describeAPIError("getting the "+apiName+" endpoint", err)
	}
	return strings.TrimSuffix(aws.ToString(out.DataEndpoint), "/"), nil
}
