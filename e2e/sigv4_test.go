package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestSignatureVerifiedOnEveryOperation: through the real binary started
// with --access-key/--secret-key, every operation — the control plane, the
// tag operations by ARN, and the streaming PutMedia, GetMedia and
// GetMediaForFragmentList — refuses with 403 and the service's error name a
// request with no signature, an unknown access key, a wrong secret, a clock
// 10 minutes off, or a signed header changed after signing; and accepts the
// same request signed right.
func TestSignatureVerifiedOnEveryOperation(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	info := createActive(t, srv.url, "guarded", 24)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	numbers := sendAll(t, srv.url, "guarded", header, frags[:2])

	ops := []struct {
		path string
		in   map[string]any
	}{
		{"/createStream", map[string]any{"StreamName": "guarded-2"}},
		{"/describeStream", map[string]any{"StreamName": "guarded"}},
		{"/listStreams", map[string]any{}},
		{"/updateStream", map[string]any{"StreamName": "guarded", "CurrentVersion": info.Version, "MediaType": "video/h264"}},
		{"/updateDataRetention", map[string]any{"StreamName": "guarded", "CurrentVersion": info.Version, "Operation": "INCREASE_DATA_RETENTION", "DataRetentionChangeInHours": 1}},
		{"/getDataEndpoint", map[string]any{"StreamName": "guarded", "APIName": "PUT_MEDIA"}},
		{"/tagStream", map[string]any{"StreamName": "guarded", "Tags": map[string]string{"k": "v"}}},
		{"/untagStream", map[string]any{"StreamName": "guarded", "TagKeyList": []string{"k"}}},
		{"/listTagsForStream", map[string]any{"StreamName": "guarded"}},
		{"/TagResource", map[string]any{"ResourceARN": info.StreamARN, "Tags": []map[string]string{{"Key": "k", "Value": "v"}}}},
		{"/UntagResource", map[string]any{"ResourceARN": info.StreamARN, "TagKeyList": []string{"k"}}},
		{"/ListTagsForResource", map[string]any{"ResourceARN": info.StreamARN}},
		{"/listFragments", map[string]any{"StreamName": "guarded"}},
		{"/getMediaForFragmentList", map[string]any{"StreamName": "guarded", "Fragments": numbers}},
		{"/getMedia", map[string]any{"StreamName": "guarded", "StartSelector": map[string]string{"StartSelectorType": "EARLIEST"}}},
		{"/getImages", map[string]any{"StreamName": "guarded"}},
		{"/deleteStream", map[string]any{"StreamARN": info.StreamARN}},
	}
	unknownKey := aws.Credentials{AccessKeyID: "AKIDNOBODY", SecretAccessKey: creds.SecretAccessKey}
	faults := []struct {
		name  string
		creds aws.Credentials
		at    time.Time
		tamper,
		tamperPut func(*http.Request)
		want string
	}{
		{name: "no signature", creds: creds, want: "MissingAuthenticationTokenException",
			tamper: func(r *http.Request) { r.Header.Del("Authorization") }},
		{name: "unknown access key", creds: unknownKey, want: "UnrecognizedClientException"},
		{name: "wrong secret", creds: wrongSecret(), want: "InvalidSignatureException"},
		{name: "clock 10 minutes behind", creds: creds, at: time.Now().Add(-10 * time.Minute), want: "InvalidSignatureException"},
		{name: "clock 10 minutes ahead", creds: creds, at: time.Now().Add(10 * time.Minute), want: "InvalidSignatureException"},
		{name: "signed header changed", creds: creds, want: "InvalidSignatureException",
			tamper:    func(r *http.Request) { r.Header.Set("Content-Type", "application/x-amz-json-1.1") },
			tamperPut: func(r *http.Request) { r.Header.Set("x-amzn-stream-name", "guarded-other") }},
	}
	check := func(what string, r apiResult, want string) {
		t.Helper()
		if r.Status != 403 || r.errorType() != want {
			t.Errorf("%s: %d %s %s; want 403 %s", what, r.Status, r.errorType(), r.message(), want)
		}
	}
	for _, f := range faults {
		for _, op := range ops {
			check(f.name+": "+op.path, post(t, srv.url, op.path, op.in, f.creds, f.at, f.tamper), f.want)
		}
		tamper := f.tamper
		if f.tamperPut != nil {
			tamper = f.tamperPut
		}
		r, _ := putMediaOnce(t, srv.url, "guarded", header, f.creds, f.at, tamper)
		check(f.name+": /putMedia", r, f.want)
	}
	// The same requests signed right are not refused (the last one deletes
	// the stream, so it goes last).
	for _, op := range ops {
		if r := post(t, srv.url, op.path, op.in, creds, time.Time{}, nil); r.Status == 403 || r.Status == 401 {
			t.Errorf("signed right: %s: %d %s", op.path, r.Status, r.errorType())
		}
	}
	waitStatus(t, srv.url, "guarded-2", "ACTIVE") // created by the signed CreateStream above
	if r, acks := putMediaOnce(t, srv.url, "guarded-2", append(append([]byte(nil), header...), frags[0]...), creds, time.Time{}, nil); r.Status != 200 || len(acks) == 0 {
		t.Errorf("PutMedia signed right: %d %s", r.Status, r.Body)
	}
}
