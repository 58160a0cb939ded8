package kvs_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
)

// TestPrepareStreamWaitsUntilActive: against kvsgo serve with the
// service's stream lifecycle (a new stream is CREATING for a while, and its
// data endpoints answer only once it is ACTIVE), PrepareStream creates the
// stream and returns its PutMedia endpoint once the stream is ACTIVE.
func TestPrepareStreamWaitsUntilActive(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), TransitionDelay: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Credentials: map[string]string{"AKIDTEST": "secret"}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		hs.Close()
		st.Close()
	})
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
	cp := kvs.NewSDKControlPlane(cfg, hs.URL, nil)
	ctx := context.Background()
	began := time.Now()
	ep, retention, err := cp.PrepareStream(ctx, kvs.StreamSetup{Name: "new-cam", Create: true, RetentionHours: 12})
	if err != nil {
		t.Fatalf("PrepareStream on a stream that is CREATING for a while: %v", err)
	}
	t.Logf("PrepareStream took %s for a stream CREATING for 700 ms", time.Since(began).Round(time.Millisecond))
	if ep != hs.URL || retention != 12 {
		t.Fatalf("endpoint %q retention %d", ep, retention)
	}
	out, err := cp.Client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("new-cam")})
	if err != nil || out.StreamInfo.Status != types.StatusActive {
		t.Fatalf("after PrepareStream: %v %v", out, err)
	}

	// A stream someone else just created is waited for too.
	if _, err := cp.Client.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("theirs"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.PrepareStream(ctx, kvs.StreamSetup{Name: "theirs"}); err != nil {
		t.Fatalf("PrepareStream on a stream another client just created: %v", err)
	}

	// And the wait is bounded, with a message that says why.
	slow := kvs.NewSDKControlPlane(cfg, hs.URL, nil)
	slow.ActiveTimeout = 100 * time.Millisecond
	if _, _, err := slow.PrepareStream(ctx, kvs.StreamSetup{Name: "slow", Create: true}); err == nil {
		t.Fatal("PrepareStream returned before the stream was ACTIVE")
	} else if want := `stream "slow" is still CREATING`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}
