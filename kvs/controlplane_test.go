package kvs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func sdkConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
}

// TestControlPlaneAgainstMoto: DescribeStream (missing, so CreateStream)
// and GetDataEndpoint succeed against moto's Kinesis Video control plane,
// an implementation nobody here wrote.
func TestControlPlaneAgainstMoto(t *testing.T) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatal("moto_server is not installed (it comes with the machine's Python, beside the AWS CLI)")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() { // drain its log
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cp := NewSDKControlPlane(sdkConfig(), url, nil)
	ctx := context.Background()
	ep, retention, err := cp.PrepareStream(ctx, StreamSetup{Name: "moto-cam", Create: true, RetentionHours: 24})
	if err != nil {
		t.Fatalf("against moto: %v", err)
	}
	if !strings.HasPrefix(ep, "http") || retention != 24 {
		t.Fatalf("endpoint %q, retention %d", ep, retention)
	}
	// Moto now has the stream: a second call finds it instead of creating it.
	if _, _, err := cp.PrepareStream(ctx, StreamSetup{Name: "moto-cam", Create: false}); err != nil {
		t.Fatalf("existing stream: %v", err)
	}
	out, err := cp.Client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("moto-cam")})
	if err != nil || aws.ToString(out.StreamInfo.StreamName) != "moto-cam" {
		t.Fatalf("describe: %v", err)
	}
	if _, _, err := cp.PrepareStream(ctx, StreamSetup{Name: "absent", Create: false}); !errors.Is(err, ErrNoStream) {
		t.Fatalf("missing stream without create: %v", err)
	}
}

// TestPrepareStreamAsksForTheEndpointAtOnce: for a stream that exists,
// GetDataEndpoint goes out beside DescribeStream, not after it: the
// server here answers DescribeStream only once GetDataEndpoint has
// arrived, which a client asking one after the other never gets to.
func TestPrepareStreamAsksForTheEndpointAtOnce(t *testing.T) {
	endpointAsked := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /describeStream", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-endpointAsked:
		case <-time.After(10 * time.Second):
			http.Error(w, `{"message":"GetDataEndpoint never came"}`, http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"StreamInfo":{"StreamName":"cam","Status":"ACTIVE","DataRetentionInHours":24}}`)
	})
	mux.HandleFunc("POST /getDataEndpoint", func(w http.ResponseWriter, r *http.Request) {
		close(endpointAsked)
		fmt.Fprintf(w, `{"DataEndpoint":"http://%s/"}`, r.Host)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cp := NewSDKControlPlane(sdkConfig(), srv.URL, nil)
	ep, retention, err := cp.PrepareStream(context.Background(), StreamSetup{Name: "cam"})
	if err != nil || ep != srv.URL || retention != 24 {
		t.Fatalf("PrepareStream: %q %d %v", ep, retention, err)
	}
}
