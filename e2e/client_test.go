package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

var creds = aws.Credentials{AccessKeyID: "AKIDE2E", SecretAccessKey: "e2e-secret"}

func sign(t *testing.T, req *http.Request, hash string) {
	t.Helper()
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, "kinesisvideo", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// call makes a signed JSON call; out may be nil.
func call(t *testing.T, base, path string, in, out any) int {
	t.Helper()
	var buf bytes.Buffer
	code := callRaw(t, base, path, in, &buf)
	if out != nil && code == 200 {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			t.Fatalf("%s: %v %s", path, err, buf.Bytes())
		}
	}
	return code
}

// callRaw makes a signed JSON call and copies the response body to w.
func callRaw(t *testing.T, base, path string, in any, w io.Writer) int {
	t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	sum := sha256.Sum256(body)
	sign(t, req, hex.EncodeToString(sum[:]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// session is a PutMedia request whose body the test writes as it goes.
type session struct {
	body *io.PipeWriter
	acks chan kvs.Ack
	done chan error
}

func openSession(t *testing.T, base, stream string) *session {
	t.Helper()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, base+"/putMedia", pr)
	req.ContentLength = -1
	now := time.Now()
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%d", now.Unix(), now.Nanosecond()/1e6))
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	sign(t, req, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	s := &session{body: pw, acks: make(chan kvs.Ack, 1024), done: make(chan error, 1)}
	go func() {
		defer close(s.acks)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			s.done <- fmt.Errorf("status %d", resp.StatusCode)
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if a, err := kvs.ParseAck(sc.Bytes()); err == nil && a.EventType != kvs.AckIdle {
				s.acks <- a
			}
		}
		s.done <- sc.Err()
	}()
	return s
}

// fixtureFragments turns a raw H.264 fixture into KVS fragments (a
// header, then one byte slice per fragment), with absolute timecodes
// starting at start.
func fixtureFragments(t *testing.T, name string, start time.Time) (header []byte, fragments [][]byte, framesPer []int) {
	t.Helper()
	ar := codec.NewAnnexBReader(bytes.NewReader(mediatest.ReadFixture(t, name)), codec.H264)
	params := &codec.Params{Codec: codec.H264}
	var out bytes.Buffer
	var w *mkv.Writer
	var cur *bytes.Buffer
	for i := 0; ; i++ {
		au, err := ar.ReadAccessUnit()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := params.Update(au); err != nil {
			t.Fatal(err)
		}
		if w == nil {
			cpd, _ := params.CodecPrivate()
			info := params.Info()
			w, _ = mkv.NewWriter(&out, mkv.Header{Tracks: []mkv.Track{{Number: 1, Type: mkv.TrackTypeVideo,
				CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: cpd, Width: uint16(info.Width), Height: uint16(info.Height)}}})
			if err := w.WriteHeader(); err != nil {
				t.Fatal(err)
			}
			header = append([]byte(nil), out.Bytes()...)
			out.Reset()
		}
		key := codec.H264.IsKey(au)
		if key {
			fragments = append(fragments, nil)
			framesPer = append(framesPer, 0)
			cur = &out
			cur.Reset()
		}
		pts := time.Duration(start.UnixMilli())*time.Millisecond + time.Duration(i)*time.Second/30
		if err := w.WriteFrame(1, pts, key, codec.H264.AppendLengthPrefixed(nil, au)); err != nil {
			t.Fatal(err)
		}
		fragments[len(fragments)-1] = append(fragments[len(fragments)-1], out.Bytes()...)
		framesPer[len(framesPer)-1]++
		out.Reset()
	}
	return header, fragments, framesPer
}
