package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
)

const (
	testKey    = "AKIDKVSGOTEST"
	testSecret = "kvsgo-test-secret"
	region     = "us-east-1"
)

var testCreds = aws.Credentials{AccessKeyID: testKey, SecretAccessKey: testSecret}

type testServer struct {
	*httptest.Server
	store *store.Store
	srv   *server.Server
	dir   string
}

// startServer runs the server on 127.0.0.1 with a fresh store, verifying
// signatures against testKey/testSecret.
func startServer(t *testing.T, tweak ...func(*server.Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Logger: log, Credentials: map[string]string{testKey: testSecret}, GetMediaLinger: 300 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	srv := server.New(cfg)
	hs := httptest.NewServer(srv.Handler())
	ts := &testServer{Server: hs, store: st, srv: srv, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		st.Close()
	})
	return ts
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// post sends a JSON body to path, signed with the test credentials.
func (ts *testServer) post(t *testing.T, path string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), testCreds, req, hex.EncodeToString(sum[:]), "kinesisvideo", region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// call makes a signed JSON API call and decodes the response into out.
func (ts *testServer) call(t *testing.T, path string, in, out any) (int, http.Header) {
	t.Helper()
	body, _ := json.Marshal(in)
	resp := ts.post(t, path, body)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, data)
		}
	}
	return resp.StatusCode, resp.Header
}

func (ts *testServer) createStream(t *testing.T, name string, retention int) {
	t.Helper()
	if code, h := ts.call(t, "/createStream", map[string]any{"StreamName": name, "DataRetentionInHours": retention, "MediaType": "video/h264"}, nil); code != 200 {
		t.Fatalf("createStream: %d %s", code, h.Get("X-Amzn-ErrorType"))
	}
}

// putMedia sends body as one PutMedia request, signed as the C producer
// signs it, and returns every ack line.
func putMedia(t *testing.T, url, stream string, body io.Reader, timecodeType string) ([]kvs.Ack, int) {
	t.Helper()
	acks, code, _ := putMediaRaw(t, url, stream, body, timecodeType, nil)
	return acks, code
}

func putMediaRaw(t *testing.T, url, stream string, body io.Reader, timecodeType string, headers map[string]string) ([]kvs.Ack, int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/putMedia", body)
	req.ContentLength = -1
	now := time.Now()
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", timecodeType)
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%d", now.Unix(), now.Nanosecond()/1e6))
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	req.Header.Set("Expect", "100-continue")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), testCreds, req, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "kinesisvideo", region, now); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType") + " " + string(data)
	}
	var acks []kvs.Ack
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		a, err := kvs.ParseAck(sc.Bytes())
		if err != nil {
			t.Fatalf("ack %q: %v", sc.Text(), err)
		}
		if a.EventType != kvs.AckIdle {
			acks = append(acks, a)
		}
	}
	return acks, resp.StatusCode, ""
}

func countAcks(acks []kvs.Ack) map[kvs.AckEvent]int {
	m := map[kvs.AckEvent]int{}
	for _, a := range acks {
		m[a.EventType]++
	}
	return m
}

// aws runs the AWS CLI against the server with the test credentials.
func (ts *testServer) aws(t *testing.T, args ...string) (stdout string, code int, stderr string) {
	t.Helper()
	return awsCLI(t, ts.URL, testKey, testSecret, args...)
}

func awsCLI(t *testing.T, endpoint, key, secret string, args ...string) (string, int, string) {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Fatal("the AWS CLI is not installed; ./scripts/test installs it")
	}
	cmd := exec.Command(bin, append(args, "--endpoint-url", endpoint, "--region", region, "--output", "json")...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_ACCESS_KEY_ID="+key, "AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), code, e.String()
}

// mustGetMedia calls GetMedia with a raw StartSelector and returns the
// whole response body.
func mustGetMedia(t *testing.T, ts *testServer, stream, selector string) []byte {
	t.Helper()
	resp := ts.post(t, "/getMedia", []byte(`{"StreamName":"`+stream+`","StartSelector":`+selector+`}`))
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GetMedia: %d %v %s", resp.StatusCode, err, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "video/webm" {
		t.Fatalf("GetMedia Content-Type %q", ct)
	}
	return data
}
