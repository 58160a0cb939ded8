package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/kvs"
)

func fuzzServer(f *testing.F) (*Server, store.Stream) {
	st, err := store.Open(store.Options{Dir: f.TempDir(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	stream, err := st.CreateStream(store.NewStream{Name: "fuzz", RetentionHours: 1})
	if err != nil {
		f.Fatal(err)
	}
	return New(Config{Store: st, Logger: slog.New(slog.DiscardHandler)}), stream
}

// FuzzPutMediaBody: any PutMedia body ends the session with an ack
// stream, never a panic, and never more buffered than the limits allow.
func FuzzPutMediaBody(f *testing.F) {
	for _, p := range []string{"../../../shared/reference/kvssink-capture/04_putMedia.body", "../../testdata/h264-aac.mkv"} {
		b, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 3000)])
	}
	s, stream := fuzzServer(f)
	s.cfg.MaxFragmentSize = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		in := newIngest(s, stream, false, 0, true, s.log)
		in.run(&bodyReader{r: bytes.NewReader(data), in: in}) // not runSafely: a panic must fail the fuzzer
		acks, _ := in.acks.take(nil)
		for _, a := range acks {
			if a.EventType == kvs.AckError && a.ErrorCode == "" {
				t.Errorf("ERROR ack without a code: %+v", a)
			}
		}
		if in.fw != nil {
			t.Fatal("a fragment was left half-written")
		}
		if c := cap(in.win.buf); c > maxHeld+minRead {
			t.Fatalf("%d bytes buffered", c)
		}
	})
}

// FuzzJSONRequests: any body to any JSON operation gets a 2xx or 4xx
// answer in the AWS error shape, never a 5xx or a panic.
func FuzzJSONRequests(f *testing.F) {
	paths := []string{"/createStream", "/describeStream", "/listStreams", "/deleteStream", "/updateStream",
		"/updateDataRetention", "/getDataEndpoint", "/tagStream", "/untagStream", "/listTagsForStream",
		"/listFragments", "/getMedia", "/getMediaForFragmentList", "/TagResource", "/UntagResource", "/ListTagsForResource"}
	f.Add(uint8(0), []byte(`{"StreamName":"x","DataRetentionInHours":24,"Tags":{"a":"b"}}`))
	f.Add(uint8(2), []byte(`{"MaxResults":2,"NextToken":"ZnV6eg==","StreamNameCondition":{"ComparisonOperator":"BEGINS_WITH","ComparisonValue":"f"}}`))
	f.Add(uint8(10), []byte(`{"StreamName":"fuzz","FragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1.5,"EndTimestamp":"2026-01-01T00:00:00Z"}}}`))
	f.Add(uint8(11), []byte(`{"StreamName":"fuzz","StartSelector":{"StartSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1e300}}`))
	f.Add(uint8(12), []byte(`{"StreamName":"fuzz","Fragments":["1"]}`))
	s, stream := fuzzServer(f)
	token := listToken{Stream: stream.ID, After: 3, Start: 1, End: 2}.encode()
	f.Add(uint8(10), []byte(`{"StreamName":"fuzz","MaxResults":1,"NextToken":"`+token+`"}`))
	f.Add(uint8(13), []byte(`{"ResourceARN":"`+stream.ARN+`","Tags":[{"Key":"k","Value":"v"}]}`))
	f.Add(uint8(15), []byte(`{"ResourceARN":"`+stream.ARN+`"}`))
	h := s.Handler()
	creds := aws.Credentials{AccessKeyID: "AKIDFUZZ", SecretAccessKey: "s"}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		path := paths[int(op)%len(paths)]
		if path == "/deleteStream" {
			return // would remove the stream the other inputs use
		}
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4567"+path, bytes.NewReader(body))
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		// GetMedia waits at the live edge: end it soon.
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct{ Message string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Message == "" || rec.Header().Get("X-Amzn-ErrorType") == "" {
				t.Fatalf("%s: error without the AWS shape: %s", path, rec.Body)
			}
		}
	})
}
