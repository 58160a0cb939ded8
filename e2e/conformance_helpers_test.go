package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// apiResult is a JSON API response as a client sees it.
type apiResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// errorType is the error name as the SDKs read it from X-Amzn-ErrorType
// (the part before any colon).
func (r apiResult) errorType() string {
	v, _, _ := strings.Cut(r.Header.Get("X-Amzn-ErrorType"), ":")
	return v
}

// message is the error body's Message, spelled as the service spells it
// ({"Message": …}; Go's decoder alone would take any case).
func (r apiResult) message() string {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	s, _ := m["Message"].(string)
	return s
}

// post sends a JSON body signed with c at time at (time.Now() when zero);
// tamper, when set, changes the request after it is signed.
func post(t *testing.T, base, path string, in any, c aws.Credentials, at time.Time, tamper func(*http.Request)) apiResult {
	t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if at.IsZero() {
		at = time.Now()
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), c, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return apiResult{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// callOK makes a signed call that must succeed and decodes its answer.
func callOK(t *testing.T, base, path string, in, out any) {
	t.Helper()
	r := post(t, base, path, in, creds, time.Time{}, nil)
	if r.Status != 200 {
		t.Fatalf("%s: %d %s %s", path, r.Status, r.errorType(), r.Body)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("%s: %v %s", path, err, r.Body)
		}
	}
}

type streamInfo struct {
	StreamName, StreamARN, Status, Version string
	CreationTime                           float64
	DataRetentionInHours                   int
}

func describe(t *testing.T, base, name string) (streamInfo, apiResult) {
	t.Helper()
	r := post(t, base, "/describeStream", map[string]string{"StreamName": name}, creds, time.Time{}, nil)
	var out struct{ StreamInfo streamInfo }
	if r.Status == 200 {
		_ = json.Unmarshal(r.Body, &out)
	}
	return out.StreamInfo, r
}

// createActive creates a stream and waits until it is ACTIVE, as a client of
// the service must.
func createActive(t *testing.T, base, name string, retention int) streamInfo {
	t.Helper()
	callOK(t, base, "/createStream", map[string]any{"StreamName": name, "DataRetentionInHours": retention}, nil)
	return waitStatus(t, base, name, "ACTIVE")
}

// waitStatus polls DescribeStream until the stream has status want ("" for
// gone).
func waitStatus(t *testing.T, base, name, want string) streamInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, r := describe(t, base, name)
		if (want == "" && r.Status == 404) || (r.Status == 200 && info.Status == want) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: %d %s, status %q; want %q", name, r.Status, r.errorType(), info.Status, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mediaChunk is one chunk of a GetMedia (or GetMediaForFragmentList)
// response: the AWS tags it carried and how many frames.
type mediaChunk struct {
	Tags   map[string]string
	Frames int
	Data   []byte // the frames' bytes, concatenated
	End    int64  // offset in the body where the chunk ended
}

func (c mediaChunk) number() string { return c.Tags[mkv.TagFragmentNumber] }
func (c mediaChunk) errorID() string {
	return c.Tags[mkv.TagErrorID]
}

// readChunks parses a GetMedia-style body chunk by chunk, calling each for
// every complete chunk until each returns false or the body ends. A chunk is
// complete at its trailing tags (GetMedia's CONTINUATION_TOKEN), its error
// tags, the next chunk's EBML header, or the end of the body
// (GetMediaForFragmentList has no trailing tags). It returns the chunks and
// whether the body ended (rather than each stopping it).
func readChunks(body io.Reader, each func(mediaChunk) bool) (chunks []mediaChunk, ended bool, err error) {
	d := mkv.NewDemuxer(body)
	var cur *mediaChunk
	var lastEnd int64
	finish := func(end int64) bool {
		cur.End = end
		chunks = append(chunks, *cur)
		cur = nil
		return each(chunks[len(chunks)-1])
	}
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			if cur != nil {
				finish(lastEnd)
			}
			return chunks, true, nil
		}
		if err != nil {
			return chunks, false, err
		}
		lastEnd = max(lastEnd, ev.End)
		switch ev.Type {
		case mkv.EventEBML:
			if cur != nil && !finish(ev.Offset) {
				return chunks, false, nil
			}
			cur = &mediaChunk{Tags: map[string]string{}}
		case mkv.EventBlock:
			if cur != nil {
				for _, f := range ev.Block.Frames {
					cur.Frames++
					cur.Data = append(cur.Data, f...)
				}
			}
		case mkv.EventTags:
			if cur == nil {
				continue
			}
			done := false
			for _, tg := range ev.Tags {
				cur.Tags[tg.Name] = tg.Value
				if tg.Name == mkv.TagContinuation || tg.Name == mkv.TagErrorID {
					done = true
				}
			}
			if done && !finish(ev.End) {
				return chunks, false, nil
			}
		}
	}
}

// getMediaReader is a GetMedia request being read in the background.
type getMediaReader struct {
	cancel context.CancelFunc
	status chan int          // the HTTP status, once
	chunks chan mediaChunk   // every complete chunk
	done   chan readerResult // once, when the body ends or the read fails
}

type readerResult struct {
	chunks []mediaChunk
	ended  bool // the server ended the response
	err    error
}

// startGetMedia starts a signed GetMedia request and reads it in the
// background until the server ends it or stop is called.
func startGetMedia(t *testing.T, base, stream string, selector map[string]any) *getMediaReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(map[string]any{"StreamName": stream, "StartSelector": selector})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/getMedia", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	g := &getMediaReader{cancel: cancel, status: make(chan int, 1), chunks: make(chan mediaChunk, 1024), done: make(chan readerResult, 1)}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			g.status <- 0
			g.done <- readerResult{err: err}
			return
		}
		defer resp.Body.Close()
		g.status <- resp.StatusCode
		if resp.StatusCode != 200 {
			data, _ := io.ReadAll(resp.Body)
			g.done <- readerResult{err: errors.New(string(data))}
			return
		}
		chunks, ended, err := readChunks(resp.Body, func(c mediaChunk) bool { g.chunks <- c; return true })
		if ctx.Err() != nil {
			ended = false
		}
		g.done <- readerResult{chunks: chunks, ended: ended, err: err}
	}()
	t.Cleanup(cancel)
	return g
}

// next waits for the reader's next chunk.
func (g *getMediaReader) next(t *testing.T, within time.Duration) mediaChunk {
	t.Helper()
	select {
	case c := <-g.chunks:
		return c
	case <-time.After(within):
		t.Fatalf("no GetMedia chunk within %s", within)
	}
	return mediaChunk{}
}

// wait waits for the response to end.
func (g *getMediaReader) wait(t *testing.T, within time.Duration) readerResult {
	t.Helper()
	select {
	case r := <-g.done:
		return r
	case <-time.After(within):
		t.Fatalf("GetMedia did not end within %s", within)
	}
	return readerResult{}
}

// getMediaChunks reads the first n chunks of a GetMedia response and
// returns their bytes: for streams whose producer has not ended its stream,
// where GetMedia goes on waiting at the live edge.
func getMediaChunks(t *testing.T, base, stream string, selector map[string]any, n int) ([]byte, []mediaChunk) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"StreamName": stream, "StartSelector": selector})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/getMedia", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("getMedia: %d %s", resp.StatusCode, data)
	}
	var raw bytes.Buffer
	count := 0
	chunks, _, err := readChunks(io.TeeReader(resp.Body, &raw), func(mediaChunk) bool { count++; return count < n })
	if err != nil || len(chunks) < n {
		t.Fatalf("GetMedia gave %d chunks of the %d expected: %v", len(chunks), n, err)
	}
	return raw.Bytes()[:chunks[n-1].End], chunks
}

// putMediaOnce sends a whole PutMedia body in one request signed with c at
// time at (time.Now() when zero; tamper changes the request after signing)
// and returns the response with its acks.
func putMediaOnce(t *testing.T, base, stream string, body []byte, c aws.Credentials, at time.Time, tamper func(*http.Request)) (apiResult, []kvs.Ack) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/putMedia", io.NopCloser(bytes.NewReader(body)))
	req.ContentLength = -1
	if at.IsZero() {
		at = time.Now()
	}
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%d", at.Unix(), at.Nanosecond()/1e6))
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	if err := v4.NewSigner().SignHTTP(context.Background(), c, req, sigv4EmptyHash, "kinesisvideo", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var acks []kvs.Ack
	if resp.StatusCode == 200 {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if a, err := kvs.ParseAck(line); err == nil && a.EventType != kvs.AckIdle {
				acks = append(acks, a)
			}
		}
	}
	return apiResult{Status: resp.StatusCode, Header: resp.Header, Body: data}, acks
}

const sigv4EmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// awsCLICmd is the AWS CLI against the server, with the e2e credentials and
// no retries (so that a throttled call shows).
func awsCLICmd(t *testing.T, endpoint string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(mediatest.Tool(t, "aws"), append(args, "--endpoint-url", endpoint, "--output", "json")...)
	cmd.Env = append(awsEnv(), "AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS=1")
	return cmd
}
