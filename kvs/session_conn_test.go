package kvs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestSessionTryWriteKeepsWhatTheSocketDoesNotTake: frames handed to a
// connection whose peer does not read fill the socket; TryWrite then
// keeps the rest of a chunk (Pending) or refuses the next one, and after
// Flush the peer reads every chunk, whole and in order, as a chunked body.
func TestSessionTryWriteKeepsWhatTheSocketDoesNotTake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		body []byte
		err  error
	}
	release := make(chan struct{})
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- result{err: err}
			return
		}
		if req.Header.Get("Expect") != "100-continue" || req.TransferEncoding[0] != "chunked" {
			t.Errorf("request headers %v, transfer encoding %v", req.Header, req.TransferEncoding)
		}
		_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		<-release // the socket fills meanwhile
		body, err := io.ReadAll(httputil.NewChunkedReader(br))
		got <- result{body, err}
	}()
	sess, err := OpenSession(context.Background(), SessionConfig{Endpoint: "http://" + ln.Addr().String(), Stream: "s", Region: "us-east-1",
		Credentials: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Abort()
	if _, err := sess.Write([]byte("header")); err != nil { // waits for 100 Continue
		t.Fatal(err)
	}
	want := []byte("header")
	frame := make([]byte, 50_000)
	refused := false
	for i := 0; i < 2000 && !refused; i++ {
		for j := range frame {
			frame[j] = byte(i + j)
		}
		if !sess.TryWrite(frame) {
			refused = true // something is pending and the socket is full
			break
		}
		want = append(want, frame...)
	}
	if !refused || !sess.Pending() {
		t.Fatalf("the socket never filled: refused %v, pending %v", refused, sess.Pending())
	}
	close(release)
	t.Logf("written %d bytes before the socket filled", len(want))
	if err := sess.Flush(); err != nil {
		t.Fatal(err)
	}
	if sess.Pending() {
		t.Fatal("Pending after Flush")
	}
	if _, err := sess.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "last"...)
	t.Log("flushed")
	if err := sess.CloseBody(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !bytes.Equal(r.body, want) {
			t.Fatalf("the peer read %d bytes, not the %d written, in order", len(r.body), len(want))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the peer did not read the body")
	}
}

// TestSessionRefusedBeforeTheBody: a refusal instead of 100 Continue
// comes back from the first Write, and the session says why.
func TestSessionRefusedBeforeTheBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Amzn-ErrorType", "NotAuthorizedException:")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"no"}`)
	}))
	defer srv.Close()
	sess, err := OpenSession(context.Background(), SessionConfig{Endpoint: srv.URL, Stream: "s", Region: "us-east-1",
		Credentials: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Abort()
	if _, err := sess.Write([]byte("header")); err == nil {
		t.Fatal("Write went through a refused request")
	}
	<-sess.Done()
	if e := sess.Err(); !errors.Is(e, ErrRefused) || !errors.Is(e, ErrAuth) {
		t.Fatalf("Err = %v, want a refusal for the credentials", e)
	}
}

// TestSessionThroughHTTPClient: with a caller's HTTPClient (and so
// through a proxy) the body goes through net/http: TryWrite declines,
// Write and CloseBody carry the body, and the acks come back.
func TestSessionThroughHTTPClient(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- body
		a := Ack{EventType: AckPersisted, FragmentTimecode: 1000, HasTimecode: true, FragmentNumber: "1"}
		_, _ = w.Write(a.AppendJSON(nil))
	}))
	defer srv.Close()
	sess, err := OpenSession(context.Background(), SessionConfig{Endpoint: srv.URL, Stream: "s", Region: "us-east-1",
		Credentials: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Abort()
	if sess.TryWrite([]byte("x")) {
		t.Fatal("TryWrite took bytes on the net/http path")
	}
	if _, err := sess.Write([]byte("frame")); err != nil {
		t.Fatal(err)
	}
	if err := sess.CloseBody(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "frame" {
		t.Fatalf("the server read %q", b)
	}
	a, ok := <-sess.Acks()
	if !ok || a.EventType != AckPersisted || a.FragmentTimecode != 1000 {
		t.Fatalf("ack %+v %v", a, ok)
	}
}
