package kvs

import (
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// connectionAge is how long a connection signed with creds may stay open:
// maxAge, and no later than a minute before they expire. When they expire
// within two minutes it is until they expire: a cache (aws.CredentialsCache)
// reports as the expiry the time it renews them, and hands out the same
// ones until then, so a minute's margin before it would make every
// connection of that last minute a one-fragment connection.
func connectionAge(creds aws.Credentials, now time.Time, maxAge time.Duration) time.Duration {
	if !creds.CanExpire {
		return maxAge
	}
	left := creds.Expires.Sub(now)
	if left >= 2*time.Minute {
		return min(maxAge, left-time.Minute)
	}
	return min(maxAge, left)
}

// credentialsError says what to do when there are no credentials. A
// provider that classifies its errors for the SDK's retryer (the AWS IoT
// one) explains them itself; the standard chain's "no credentials found"
// gets the usual settings.
func credentialsError(err error) error {
	var r interface{ RetryableError() bool }
	if errors.As(err, &r) {
		return fmt.Errorf("no AWS credentials: %w", err)
	}
	return fmt.Errorf("no AWS credentials: %w (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)", err)
}

// retryableCredentials reports a failure to get credentials that may pass
// (the network, a busy endpoint), as the provider marks it for the SDK's
// retryer: it is retried like a lost connection.
func retryableCredentials(err error) bool {
	var r interface{ RetryableError() bool }
	return errors.As(err, &r) && r.RetryableError()
}

// refusedCredentials reports a failure to get credentials that the
// provider says will not pass by retrying (the AWS IoT endpoint refusing
// the certificate or the thing name), even when the SDK met it while
// signing a control-plane call.
func refusedCredentials(err error) bool {
	var r interface{ RetryableError() bool }
	return errors.As(err, &r) && !r.RetryableError()
}
