package e2e

// Conformance with the service, items 4–10 of issue 14 (shapes and
// errors), through the real binary with the AWS CLI and signed requests.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvsgo/kvsgo/internal/mediatest"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/mkv"
)

// TestRetentionErrors (item 4): ListFragments and GetMediaForFragmentList
// on a stream that keeps no data, and ListFragments for a range older than
// the retention, are InvalidArgumentException; GetMedia serves the stream
// live all the same.
func TestRetentionErrors(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "live-only", 0)
	createActive(t, srv.url, "kept", 1)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", start)

	s := openSession(t, srv.url, "live-only")
	s.body.Write(header)
	for _, f := range frags {
		s.body.Write(f)
	}
	s.body.Close()
	received := acksOf(t, s, kvs.AckReceived, len(frags)) // no PERSISTED without retention
	name, msg := awsCLIFail(t, srv.url, "kinesis-video-archived-media", "list-fragments", "--stream-name", "live-only")
	if name != "InvalidArgumentException" || !strings.Contains(msg, "retention") {
		t.Fatalf("list-fragments on a stream without retention: %s", msg)
	}
	name, msg = awsCLIFail(t, srv.url, "kinesis-video-archived-media", "get-media-for-fragment-list",
		filepath.Join(t.TempDir(), "x.mkv"), "--stream-name", "live-only", "--fragments", received[0])
	if name != "InvalidArgumentException" || !strings.Contains(msg, "retention") {
		t.Fatalf("get-media-for-fragment-list on a stream without retention: %s", msg)
	}
	if _, chunks := getMediaChunks(t, srv.url, "live-only", map[string]any{"StartSelectorType": "EARLIEST"}, len(frags)); chunks[0].number() != received[0] {
		t.Fatalf("GetMedia of a stream without retention starts at %s, want %s", chunks[0].number(), received[0])
	}

	sendAll(t, srv.url, "kept", header, frags)
	old := time.Now().Add(-3 * time.Hour)
	name, msg = awsCLIFail(t, srv.url, "kinesis-video-archived-media", "list-fragments", "--stream-name", "kept", "--fragment-selector",
		fmt.Sprintf("FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", old.Unix(), old.Add(time.Hour).Unix()))
	if name != "InvalidArgumentException" || !strings.Contains(msg, "outside of the stream retention period") {
		t.Fatalf("list-fragments older than the retention: %s", msg)
	}
	var within struct{ Fragments []listedFragment }
	jsonOf(t, awsCLI(t, srv.url, "kinesis-video-archived-media", "list-fragments", "--stream-name", "kept", "--fragment-selector",
		fmt.Sprintf("FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", old.Unix(), time.Now().Add(time.Minute).Unix())), &within)
	if len(within.Fragments) != len(frags) {
		t.Fatalf("a range reaching into the retention: %d fragments, want %d", len(within.Fragments), len(frags))
	}
}

// TestListFragmentsNextTokenKeepsTheSelector (item 5): a page asked for with
// only the NextToken lists the first request's time range, not the rest of
// the stream.
func TestListFragmentsNextTokenKeepsTheSelector(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "pages", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	var sessions [][]string
	for k := range 3 {
		header, frags, _ := fixtureFragments(t, "h264-baseline.h264", start.Add(time.Duration(k)*3*time.Second))
		sessions = append(sessions, sendAll(t, srv.url, "pages", header, frags))
	}
	all := listAll(t, srv.url, "pages")
	ts := map[string]float64{}
	for _, f := range all {
		ts[f.FragmentNumber] = f.ServerTimestamp
	}
	middle := sessions[1] // the range: the second session's fragments only
	if ts[middle[0]] <= ts[sessions[0][3]] || ts[middle[3]] >= ts[sessions[2][0]] {
		t.Fatalf("sessions' server timestamps overlap: %v", all)
	}
	selector := map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP",
		"TimestampRange": map[string]any{"StartTimestamp": ts[middle[0]], "EndTimestamp": ts[middle[3]]}}
	var page struct {
		Fragments []listedFragment
		NextToken string
	}
	callOK(t, srv.url, "/listFragments", map[string]any{"StreamName": "pages", "MaxResults": 3, "FragmentSelector": selector}, &page)
	got := numbersOf(page.Fragments)
	for page.NextToken != "" {
		token := page.NextToken
		page.NextToken = ""
		page.Fragments = nil
		callOK(t, srv.url, "/listFragments", map[string]any{"StreamName": "pages", "MaxResults": 3, "NextToken": token}, &page)
		got = append(got, numbersOf(page.Fragments)...)
		if len(got) > len(all) {
			break
		}
	}
	slices.Sort(got) // the service promises no order: clients sort
	if !slices.Equal(got, middle) {
		t.Fatalf("paged with the NextToken alone: %v; the range holds %v", got, middle)
	}
	// A token is for its own stream only.
	r := post(t, srv.url, "/listFragments", map[string]any{"StreamName": "other", "NextToken": "e30="}, creds, time.Time{}, nil)
	if r.Status != 404 && r.errorType() != "InvalidArgumentException" {
		t.Fatalf("a foreign NextToken: %d %s", r.Status, r.errorType())
	}
}

func numbersOf(fs []listedFragment) []string {
	var n []string
	for _, f := range fs {
		n = append(n, f.FragmentNumber)
	}
	return n
}

// TestFragmentNumberSelectorsAndErrors (item 6): GetMediaForFragmentList
// with a fragment the stream does not have is 400 InvalidArgumentException;
// GetMedia FRAGMENT_NUMBER starts with the chunk after the fragment named
// (as ContinuousGetMediaWorker in AWS's parser library relies on); GetMedia
// with an unknown fragment number reports AWS_KINESISVIDEO_ERROR_ID 4000
// in-band.
func TestFragmentNumberSelectorsAndErrors(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "numbers", 24)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	numbers := sendAll(t, srv.url, "numbers", header, frags)
	unknown := "91343852333" + strings.Repeat("0", 34) + "99" // this server's form, never handed out

	name, msg := awsCLIFail(t, srv.url, "kinesis-video-archived-media", "get-media-for-fragment-list",
		filepath.Join(t.TempDir(), "x.mkv"), "--stream-name", "numbers", "--fragments", numbers[0], unknown)
	if name != "InvalidArgumentException" {
		t.Fatalf("get-media-for-fragment-list with an unknown fragment: %s", msg)
	}

	out := filepath.Join(t.TempDir(), "after.mkv")
	awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", "numbers",
		"--start-selector", "StartSelectorType=FRAGMENT_NUMBER,AfterFragmentNumber="+numbers[1], out)
	chunks := chunksOfFile(t, out)
	if len(chunks) != 2 || chunks[0].number() != numbers[2] || chunks[1].number() != numbers[3] {
		t.Fatalf("GetMedia FRAGMENT_NUMBER %s sent %v; want the fragments after it, %v", numbers[1], numbersOfChunks(chunks), numbers[2:])
	}
	// The continuation token of a chunk resumes after it too.
	if chunks[0].Tags[mkv.TagContinuation] != numbers[2] {
		t.Fatalf("continuation token %q, want the fragment's own number %s (as in the service's captures)", chunks[0].Tags[mkv.TagContinuation], numbers[2])
	}

	out = filepath.Join(t.TempDir(), "unknown.mkv")
	awsCLI(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", "numbers",
		"--start-selector", "StartSelectorType=FRAGMENT_NUMBER,AfterFragmentNumber="+unknown, out)
	chunks = chunksOfFile(t, out)
	if len(chunks) != 1 || chunks[0].errorID() != "4000" || chunks[0].number() != unknown || chunks[0].Tags[mkv.TagErrorCode] == "" || chunks[0].Frames != 0 {
		t.Fatalf("GetMedia after an unknown fragment: %+v; want one error chunk with AWS_KINESISVIDEO_ERROR_ID 4000", chunks)
	}
	name, msg = awsCLIFail(t, srv.url, "kinesis-video-media", "get-media", "--stream-name", "numbers",
		"--start-selector", "StartSelectorType=FRAGMENT_NUMBER,AfterFragmentNumber=12ab", filepath.Join(t.TempDir(), "y.mkv"))
	if name != "InvalidArgumentException" {
		t.Fatalf("GetMedia with a malformed fragment number: %s", msg)
	}
}

func chunksOfFile(t *testing.T, path string) []mediaChunk {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := readChunks(bytes.NewReader(data), func(mediaChunk) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return chunks
}

func numbersOfChunks(cs []mediaChunk) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.number())
	}
	return n
}

// TestGetMediaForFragmentListTags (item 7): its chunks carry the fragment
// number and the timestamps under the API reference's names
// (..._SERVER_SIDE_TIMESTAMP, ..._PRODUCER_SIDE_TIMESTAMP) and the names
// AWS's parser library reads, and none of GetMedia's MILLIS_BEHIND_NOW or
// CONTINUATION_TOKEN.
func TestGetMediaForFragmentListTags(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "tags", 24)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	numbers := sendAll(t, srv.url, "tags", header, frags)
	listed := listAll(t, srv.url, "tags")
	out := filepath.Join(t.TempDir(), "list.mkv")
	awsCLI(t, srv.url, "kinesis-video-archived-media", "get-media-for-fragment-list", out, "--stream-name", "tags", "--fragments", numbers[2], numbers[0])
	chunks := chunksOfFile(t, out)
	if len(chunks) != 2 {
		t.Fatalf("%d chunks, want 2", len(chunks))
	}
	for i, c := range chunks {
		want := listed[[]int{2, 0}[i]]
		server := fmt.Sprintf("%.3f", want.ServerTimestamp)
		producer := fmt.Sprintf("%.3f", want.ProducerTimestamp)
		if c.number() != want.FragmentNumber || c.Tags["AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"] != server ||
			c.Tags["AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP"] != producer ||
			c.Tags[mkv.TagServerTimestamp] != server || c.Tags[mkv.TagProducerTS] != producer {
			t.Fatalf("chunk %d tags %v; want fragment %s, server %s, producer %s", i, c.Tags, want.FragmentNumber, server, producer)
		}
		for _, absent := range []string{mkv.TagMillisBehindNow, mkv.TagContinuation} {
			if _, ok := c.Tags[absent]; ok {
				t.Fatalf("chunk %d has %s, which only GetMedia sends", i, absent)
			}
		}
		if c.Frames != 25 {
			t.Fatalf("chunk %d has %d frames, want 25", i, c.Frames)
		}
	}
}

// TestStreamLifecycle (item 8): CreateStream returns while the stream is
// CREATING and its data endpoints refuse it until it is ACTIVE; updates pass
// through UPDATING (refusing another update meanwhile), DeleteStream through
// DELETING (the name stays taken meanwhile); `kvsgo put` waits for a stream
// it creates to become ACTIVE.
func TestStreamLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServe(t, append(serveArgs(t.TempDir()), "--transition-delay", "3s")...)
	// The AWS CLI can take seconds to start on a busy machine: the steps
	// that must land within a transition are signed requests.
	created := post(t, srv.url, "/createStream", map[string]any{"StreamName": "life", "DataRetentionInHours": 1}, creds, time.Time{}, nil)
	if info, _ := describe(t, srv.url, "life"); created.Status != 200 || info.Status != "CREATING" {
		t.Fatalf("right after CreateStream: %d, status %q; want CREATING", created.Status, info.Status)
	}
	for _, op := range []struct {
		path string
		in   map[string]any
	}{
		{"/getDataEndpoint", map[string]any{"StreamName": "life", "APIName": "PUT_MEDIA"}},
		{"/listFragments", map[string]any{"StreamName": "life"}},
		{"/getMedia", map[string]any{"StreamName": "life", "StartSelector": map[string]string{"StartSelectorType": "NOW"}}},
	} {
		if r := post(t, srv.url, op.path, op.in, creds, time.Time{}, nil); r.Status != 404 || r.errorType() != "ResourceNotFoundException" {
			t.Fatalf("%s while CREATING: %d %s", op.path, r.Status, r.errorType())
		}
	}
	if r, _ := putMediaOnce(t, srv.url, "life", nil, creds, time.Time{}, nil); r.Status != 404 {
		t.Fatalf("PutMedia while CREATING: %d %s", r.Status, r.errorType())
	}
	info := waitStatus(t, srv.url, "life", "ACTIVE")
	var cli struct{ StreamInfo streamInfo }
	jsonOf(t, awsCLI(t, srv.url, "kinesisvideo", "describe-stream", "--stream-name", "life"), &cli)
	if cli.StreamInfo.Status != "ACTIVE" || cli.StreamInfo.StreamARN != info.StreamARN {
		t.Fatalf("describe-stream: %+v", cli.StreamInfo)
	}
	awsCLI(t, srv.url, "kinesisvideo", "get-data-endpoint", "--stream-name", "life", "--api-name", "PUT_MEDIA")

	callOK(t, srv.url, "/updateDataRetention", map[string]any{"StreamName": "life", "CurrentVersion": info.Version,
		"Operation": "INCREASE_DATA_RETENTION", "DataRetentionChangeInHours": 2}, nil)
	updating, _ := describe(t, srv.url, "life")
	if updating.Status != "UPDATING" || updating.DataRetentionInHours != 3 {
		t.Fatalf("right after UpdateDataRetention: %+v", updating)
	}
	if r := post(t, srv.url, "/updateStream", map[string]any{"StreamName": "life", "CurrentVersion": updating.Version, "MediaType": "video/h264"},
		creds, time.Time{}, nil); r.Status != 400 || r.errorType() != "ResourceInUseException" {
		t.Fatalf("UpdateStream while UPDATING: %d %s", r.Status, r.errorType())
	}
	if r := post(t, srv.url, "/getDataEndpoint", map[string]any{"StreamName": "life", "APIName": "PUT_MEDIA"}, creds, time.Time{}, nil); r.Status != 200 {
		t.Fatalf("GetDataEndpoint while UPDATING: %d %s (an updating stream goes on streaming)", r.Status, r.errorType())
	}
	info = waitStatus(t, srv.url, "life", "ACTIVE")
	awsCLI(t, srv.url, "kinesisvideo", "update-stream", "--stream-name", "life", "--current-version", info.Version, "--media-type", "video/h264")
	info = waitStatus(t, srv.url, "life", "ACTIVE")

	callOK(t, srv.url, "/deleteStream", map[string]any{"StreamARN": info.StreamARN}, nil)
	if deleting, _ := describe(t, srv.url, "life"); deleting.Status != "DELETING" {
		t.Fatalf("right after DeleteStream: %q, want DELETING", deleting.Status)
	}
	if r := post(t, srv.url, "/createStream", map[string]any{"StreamName": "life"}, creds, time.Time{}, nil); r.Status != 400 || r.errorType() != "ResourceInUseException" {
		t.Fatalf("CreateStream while DELETING: %d %s", r.Status, r.errorType())
	}
	waitStatus(t, srv.url, "life", "")
	awsCLI(t, srv.url, "kinesisvideo", "create-stream", "--stream-name", "life")
	waitStatus(t, srv.url, "life", "ACTIVE")

	// The producer creates its stream and waits for it.
	out, errOut, code := kvsgoCmd(t, nil, "put", "--quiet", "--stream", "new-by-put", "--source", mediatest.Fixture(t, "h264-baseline.h264"), "--endpoint", srv.url, "--fast")
	if code != 0 || !strings.Contains(out, "4 persisted") {
		t.Fatalf("kvsgo put into a stream that is CREATING for 3 s: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestTagsByARN (item 9): TagResource, UntagResource and
// ListTagsForResource by ARN, the same tags as TagStream's; keys of 1–128
// characters of the allowed set, values of at most 256, at most 50 tags; a
// re-created stream has none of the old tags.
func TestTagsByARN(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	info := createActive(t, srv.url, "tagged", 24)
	awsCLI(t, srv.url, "kinesisvideo", "tag-resource", "--resource-arn", info.StreamARN, "--tags", "Key=site,Value=home", "Key=floor,Value=1")
	awsCLI(t, srv.url, "kinesisvideo", "tag-stream", "--stream-name", "tagged", "--tags", "owner=sam")
	awsCLI(t, srv.url, "kinesisvideo", "untag-resource", "--resource-arn", info.StreamARN, "--tag-key-list", "floor")
	var tags struct{ Tags map[string]string }
	jsonOf(t, awsCLI(t, srv.url, "kinesisvideo", "list-tags-for-resource", "--resource-arn", info.StreamARN), &tags)
	if len(tags.Tags) != 2 || tags.Tags["site"] != "home" || tags.Tags["owner"] != "sam" {
		t.Fatalf("list-tags-for-resource: %v", tags.Tags)
	}
	tags.Tags = nil
	jsonOf(t, awsCLI(t, srv.url, "kinesisvideo", "list-tags-for-stream", "--stream-arn", info.StreamARN), &tags)
	if len(tags.Tags) != 2 {
		t.Fatalf("list-tags-for-stream: %v", tags.Tags)
	}

	tag := func(key, value string) apiResult {
		return post(t, srv.url, "/TagResource", map[string]any{"ResourceARN": info.StreamARN,
			"Tags": []map[string]string{{"Key": key, "Value": value}}}, creds, time.Time{}, nil)
	}
	for _, c := range []struct {
		name, key, value, want string
	}{
		{"128-character key", strings.Repeat("k", 128), "v", ""},
		{"129-character key", strings.Repeat("k", 129), "v", "InvalidArgumentException"},
		{"empty key", "", "v", "InvalidArgumentException"},
		{"key with a character outside the set", "a*b", "v", "InvalidArgumentException"},
		{"256-character value", "long", strings.Repeat("v", 256), ""},
		{"257-character value", "longer", strings.Repeat("v", 257), "InvalidArgumentException"},
		{"letters of any script, spaces and _.:/=+-@", "Kamera Süd_1.a:b/c=d+e-f@g", "Überall 2", ""},
	} {
		r := tag(c.key, c.value)
		if (c.want == "" && r.Status != 200) || (c.want != "" && (r.Status != 400 || r.errorType() != c.want)) {
			t.Errorf("%s: %d %s %s; want %q", c.name, r.Status, r.errorType(), r.message(), c.want)
		}
	}
	// 50 tags per resource: the stream has 5 now.
	many := map[string]string{}
	for i := range 45 {
		many[fmt.Sprintf("t%02d", i)] = "x"
	}
	callOK(t, srv.url, "/tagStream", map[string]any{"StreamName": "tagged", "Tags": many}, nil)
	if r := tag("one-too-many", "x"); r.Status != 400 || r.errorType() != "TagsPerResourceExceededLimitException" {
		t.Fatalf("the 51st tag: %d %s", r.Status, r.errorType())
	}
	if r := tag("site", "replaced"); r.Status != 200 {
		t.Fatalf("replacing one of 50 tags: %d %s", r.Status, r.message())
	}
	missing := strings.Replace(info.StreamARN, "/tagged/", "/nope/", 1)
	if r := post(t, srv.url, "/ListTagsForResource", map[string]string{"ResourceARN": missing}, creds, time.Time{}, nil); r.Status != 404 || r.errorType() != "ResourceNotFoundException" {
		t.Fatalf("tags of an unknown ARN: %d %s", r.Status, r.errorType())
	}

	awsCLI(t, srv.url, "kinesisvideo", "delete-stream", "--stream-arn", info.StreamARN)
	waitStatus(t, srv.url, "tagged", "")
	fresh := createActive(t, srv.url, "tagged", 24)
	tags.Tags = nil
	jsonOf(t, awsCLI(t, srv.url, "kinesisvideo", "list-tags-for-resource", "--resource-arn", fresh.StreamARN), &tags)
	if len(tags.Tags) != 0 {
		t.Fatalf("a re-created stream has the old stream's tags: %v", tags.Tags)
	}
	if r := post(t, srv.url, "/ListTagsForResource", map[string]string{"ResourceARN": info.StreamARN}, creds, time.Time{}, nil); r.Status != 404 {
		t.Fatalf("tags by the deleted stream's ARN: %d %s", r.Status, r.Body)
	}
}

// TestRequestShapes (item 10): MaxResults 0 is refused (the model's minimum
// is 1); every response carries x-amzn-RequestId; errors have the
// X-Amzn-ErrorType header and a {"Message": …} body.
func TestRequestShapes(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	createActive(t, srv.url, "shapes", 24)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	numbers := sendAll(t, srv.url, "shapes", header, frags)

	for _, c := range []struct{ path, stream string }{{"/listFragments", "shapes"}, {"/listStreams", ""}} {
		in := map[string]any{"MaxResults": 0}
		if c.stream != "" {
			in["StreamName"] = c.stream
		}
		if r := post(t, srv.url, c.path, in, creds, time.Time{}, nil); r.Status != 400 || r.errorType() != "InvalidArgumentException" {
			t.Errorf("%s with MaxResults 0: %d %s", c.path, r.Status, r.errorType())
		}
	}

	results := map[string]apiResult{
		"DescribeStream":                   post(t, srv.url, "/describeStream", map[string]string{"StreamName": "shapes"}, creds, time.Time{}, nil),
		"DescribeStream (missing)":         post(t, srv.url, "/describeStream", map[string]string{"StreamName": "missing"}, creds, time.Time{}, nil),
		"CreateStream (bad name)":          post(t, srv.url, "/createStream", map[string]string{"StreamName": "bad name"}, creds, time.Time{}, nil),
		"ListFragments":                    post(t, srv.url, "/listFragments", map[string]string{"StreamName": "shapes"}, creds, time.Time{}, nil),
		"GetMediaForFragmentList":          post(t, srv.url, "/getMediaForFragmentList", map[string]any{"StreamName": "shapes", "Fragments": numbers[:1]}, creds, time.Time{}, nil),
		"an operation that does not exist": post(t, srv.url, "/noSuchOperation", map[string]string{}, creds, time.Time{}, nil),
		"ListStreams (wrong secret)":       post(t, srv.url, "/listStreams", map[string]string{}, wrongSecret(), time.Time{}, nil),
	}
	results["PutMedia"], _ = putMediaOnce(t, srv.url, "shapes", header, creds, time.Time{}, nil)
	results["PutMedia (missing stream)"], _ = putMediaOnce(t, srv.url, "missing", header, creds, time.Time{}, nil)
	for name, r := range results {
		if len(r.Header.Get("x-amzn-RequestId")) != 36 {
			t.Errorf("%s: x-amzn-RequestId %q", name, r.Header.Get("x-amzn-RequestId"))
		}
		if r.Status >= 400 && (r.errorType() == "" || r.message() == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")) {
			t.Errorf("%s: %d, error type %q, body %s: not the service's error shape", name, r.Status, r.errorType(), r.Body)
		}
	}
	if results["DescribeStream (missing)"].errorType() != "ResourceNotFoundException" || results["CreateStream (bad name)"].errorType() != "InvalidArgumentException" {
		t.Errorf("error names: %q %q", results["DescribeStream (missing)"].errorType(), results["CreateStream (bad name)"].errorType())
	}
	ids := map[string]bool{}
	for _, r := range results {
		ids[r.Header.Get("x-amzn-RequestId")] = true
	}
	if len(ids) != len(results) {
		t.Errorf("request IDs repeat: %v", ids)
	}
	// The streaming GetMedia too, while it is open.
	g := startGetMediaResp(t, srv.url, "shapes")
	if len(g.Header.Get("x-amzn-RequestId")) != 36 {
		t.Errorf("GetMedia: x-amzn-RequestId %q", g.Header.Get("x-amzn-RequestId"))
	}
	g.Body.Close()
	resp, err := http.Get(srv.url + "/healthz")
	if err != nil || len(resp.Header.Get("x-amzn-RequestId")) != 36 {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// startGetMediaResp opens a GetMedia NOW and returns its response, still
// open: the test closes its body.
func startGetMediaResp(t *testing.T, base, stream string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := signedDo(ctx, base, "/getMedia", map[string]any{"StreamName": stream, "StartSelector": map[string]string{"StartSelectorType": "NOW"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GetMedia: %v %v", resp, err)
	}
	return resp
}

// signedDo sends a signed JSON request and returns the response as soon as
// its headers are in.
func signedDo(ctx context.Context, base, path string, in any) (*http.Response, error) {
	body, _ := json.Marshal(in)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-east-1", time.Now()); err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

func wrongSecret() aws.Credentials {
	return aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "not-" + creds.SecretAccessKey}
}

// TestThrottling (item 10): GetMedia is limited to 5 calls a second per
// stream and GetDataEndpoint to bursts of 5 per stream, with
// ClientLimitExceededException, as the service documents; --no-throttle
// turns both off.
func TestThrottling(t *testing.T) {
	t.Parallel()
	for _, throttled := range []bool{true, false} {
		args := serveArgs(t.TempDir())
		if !throttled {
			args = append(args, "--no-throttle")
		}
		srv := startServe(t, args...)
		createActive(t, srv.url, "busy", 24)
		createActive(t, srv.url, "quiet", 24)
		refused := func(path string, in map[string]any, n int) (count int, last apiResult) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := postStatus(t, ctx, srv.url, path, in)
					mu.Lock()
					defer mu.Unlock()
					if r.Status == 400 && r.errorType() == "ClientLimitExceededException" {
						count++
						last = r
					} else if r.Status != 200 {
						t.Errorf("%s: %d %s", path, r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			return count, last
		}
		getMedia := map[string]any{"StreamName": "busy", "StartSelector": map[string]string{"StartSelectorType": "NOW"}}
		n, last := refused("/getMedia", getMedia, 12)
		if throttled && (n < 12-2*5 || !strings.Contains(last.message(), "5 calls a second")) {
			t.Errorf("12 GetMedia calls at once: %d refused (%s); the limit is 5 a second", n, last.message())
		}
		if !throttled && n != 0 {
			t.Errorf("with --no-throttle, %d GetMedia calls refused", n)
		}
		endpoint := map[string]any{"StreamName": "busy", "APIName": "GET_MEDIA"}
		n, _ = refused("/getDataEndpoint", endpoint, 12)
		if throttled && n < 12-2*5 {
			t.Errorf("12 GetDataEndpoint calls at once: %d refused; the limit is 5 a second", n)
		}
		if !throttled && n != 0 {
			t.Errorf("with --no-throttle, %d GetDataEndpoint calls refused", n)
		}
		// Per stream: another stream is not affected.
		if r := post(t, srv.url, "/getDataEndpoint", map[string]any{"StreamName": "quiet", "APIName": "GET_MEDIA"}, creds, time.Time{}, nil); r.Status != 200 {
			t.Errorf("another stream's GetDataEndpoint: %d %s", r.Status, r.Body)
		}
	}
}

// postStatus makes a signed call and returns once the response headers are
// in (GetMedia NOW goes on waiting for data: its body is left).
func postStatus(t *testing.T, ctx context.Context, base, path string, in map[string]any) apiResult {
	resp, err := signedDo(ctx, base, path, in)
	if err != nil {
		t.Error(err)
		return apiResult{}
	}
	defer resp.Body.Close()
	r := apiResult{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != 200 || path != "/getMedia" {
		r.Body, _ = io.ReadAll(resp.Body)
	}
	return r
}
