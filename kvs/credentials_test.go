package kvs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestConnectionAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		creds aws.Credentials
		want  time.Duration
	}{
		{aws.Credentials{}, 40 * time.Minute},
		{aws.Credentials{CanExpire: true, Expires: now.Add(time.Hour)}, 40 * time.Minute},
		{aws.Credentials{CanExpire: true, Expires: now.Add(15 * time.Minute)}, 14 * time.Minute},
		{aws.Credentials{CanExpire: true, Expires: now.Add(2 * time.Minute)}, time.Minute},
		// Less than two minutes left: up to the expiry the cache renews at.
		{aws.Credentials{CanExpire: true, Expires: now.Add(119 * time.Second)}, 119 * time.Second},
		{aws.Credentials{CanExpire: true, Expires: now.Add(30 * time.Second)}, 30 * time.Second},
	} {
		if got := connectionAge(c.creds, now, 40*time.Minute); got != c.want {
			t.Errorf("expiring in %s: %s, want %s", c.creds.Expires.Sub(now), got, c.want)
		}
	}
}

// countingCreds hands out credentials that expire after life, or fails
// with errs first.
type countingCreds struct {
	mu    sync.Mutex
	calls int
	life  time.Duration
	errs  []error
}

func (c *countingCreds) Retrieve(context.Context) (aws.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if len(c.errs) > 0 {
		err := c.errs[0]
		c.errs = c.errs[1:]
		return aws.Credentials{}, err
	}
	return aws.Credentials{AccessKeyID: "ASIA", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: time.Now().Add(c.life)}, nil
}

func (c *countingCreds) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// TestCachedCredentialsKeepTheConnection: credentials from an
// aws.CredentialsCache that renews them early report its renewal time as
// their expiry. With less than two minutes to it, the connection lasts
// until then, not a one-fragment connection after another.
func TestCachedCredentialsKeepTheConnection(t *testing.T) {
	srv := newFakeKVS(t)
	raw := &countingCreds{life: 5*time.Minute + 40*time.Second}
	cache := aws.NewCredentialsCache(raw, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute })
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv,
		Credentials: cache, Region: "us-east-1"}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	for i := range 150 { // 5 fragments over about 1.5 s
		_ = p.Put(stampedFrame(buf, i, 200))
		time.Sleep(10 * time.Millisecond)
	}
	st, err := p.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.sessionCount(); n != 1 || st.Persisted < 5 {
		t.Fatalf("%d connections, %d persisted", n, st.Persisted)
	}
	if raw.count() != 1 {
		t.Fatalf("credentials fetched %d times", raw.count())
	}
}

type retryable struct{ error }

func (retryable) RetryableError() bool { return true }

type refused struct{ error }

func (refused) RetryableError() bool { return false }

// TestCredentialsThatMayCome: a failure to get credentials that the
// provider marks retryable (the network, a busy endpoint) is retried with
// back-off and reported, and nothing is lost; any other ends the run,
// with the settings to check only when the provider does not explain.
func TestCredentialsThatMayCome(t *testing.T) {
	t.Run("retryable", func(t *testing.T) {
		srv := newFakeKVS(t)
		creds := &countingCreds{life: time.Hour, errs: []error{retryable{errors.New("endpoint unreachable")}, retryable{errors.New("endpoint busy")}}}
		log := &eventLog{}
		p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv, Credentials: creds,
			Region: "us-east-1", OnEvent: log.add, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, testTrack)
		if err != nil {
			t.Fatal(err)
		}
		putSeconds(t, p, 2)
		st, err := p.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Persisted < 2 || creds.count() != 3 {
			t.Fatalf("%d persisted, %d fetches", st.Persisted, creds.count())
		}
		msgs := strings.Join(log.messages(EventDisconnected), "\n")
		if !strings.Contains(msgs, "cannot get AWS credentials (endpoint unreachable); retrying in") || !strings.Contains(msgs, "endpoint busy") {
			t.Fatalf("not reported: %s", msgs)
		}
	})
	for _, c := range []struct {
		name    string
		err     error
		hint    bool
		message string
	}{
		{"refused by a provider that explains", refused{errors.New("AWS IoT credentials from x: HTTP 403 \"Access Denied\": fix the policy")}, false, "fix the policy"},
		{"none found", errors.New("no EC2 IMDS role found"), true, "no EC2 IMDS role found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newFakeKVS(t)
			creds := &countingCreds{life: time.Hour, errs: []error{c.err}}
			p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: srv, Credentials: creds,
				Region: "us-east-1", RetryMin: 10 * time.Millisecond}, testTrack)
			if err != nil {
				t.Fatal(err)
			}
			putSeconds(t, p, 1)
			_, err = p.Close(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), "no AWS credentials: ") || !strings.Contains(err.Error(), c.message) ||
				strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") != c.hint {
				t.Fatalf("got %v", err)
			}
			if creds.count() != 1 {
				t.Fatalf("fetched %d times", creds.count())
			}
		})
	}
}

// credentialsRefusedPlane fails PrepareStream as the SDK does when the
// credentials provider refuses while signing DescribeStream.
type credentialsRefusedPlane struct {
	mu    sync.Mutex
	calls int
}

func (c *credentialsRefusedPlane) PrepareStream(context.Context, StreamSetup) (string, int32, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return "", 0, fmt.Errorf("looking up stream s: operation error Kinesis Video: DescribeStream, get identity: get credentials: failed to refresh cached credentials, %w",
		refused{errors.New(`AWS IoT credentials from x: HTTP 403 "Invalid thing name passed": attach the thing`)})
}

// TestCredentialsRefusedInTheControlPlane: credentials the provider
// refuses for good end the run at the first control-plane call, with the
// provider's explanation, instead of being retried as a network failure.
func TestCredentialsRefusedInTheControlPlane(t *testing.T) {
	cp := &credentialsRefusedPlane{}
	p, err := NewProducer(context.Background(), ProducerConfig{Stream: StreamSetup{Name: "s"}, ControlPlane: cp, Credentials: testCreds(),
		Region: "us-east-1", RetryMin: 10 * time.Millisecond}, testTrack)
	if err != nil {
		t.Fatal(err)
	}
	putSeconds(t, p, 1)
	_, err = p.Close(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "no AWS credentials: ") || !strings.Contains(err.Error(), "attach the thing") {
		t.Fatalf("got %v", err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.calls != 1 {
		t.Fatalf("the stream was looked up %d times: a refusal is not retried", cp.calls)
	}
}
