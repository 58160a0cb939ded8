package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestSignatureVerifiedOnEveryOperation: through the real binary started
// with --access-key/--secret-key, every operation — the control plane, the
// tag operations by ARN, the streaming PutMedia, GetMedia and
// GetMediaForFragmentList, and the playback ones (GetHLSStreamingSessionURL,
// GetDASHStreamingSessionURL, GetClip) — refuses with 403 and the service's error name a
// request with no signature, an unknown access key, a wrong secret, a clock
// 10 minutes off, or a signed header changed after signing; and accepts the
// same request signed right.
func TestSignatureVerifiedOnEveryOperation(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	info := createActive(t, srv.url, "guarded", 24)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	numbers := sendAll(t, srv.url, "guarded", header, frags[:2])
	around := map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": map[string]any{
		"StartTimestamp": time.Now().Add(-time.Hour).Unix(), "EndTimestamp": time.Now().Add(time.Hour).Unix()}}

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
		{"/getHLSStreamingSessionURL", map[string]any{"StreamName": "guarded", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": around}},
		{"/getDASHStreamingSessionURL", map[string]any{"StreamName": "guarded", "PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": around}},
		{"/getClip", map[string]any{"StreamName": "guarded", "ClipFragmentSelector": around}},
		{"/deleteStream", map[string]any{"StreamARN": info.StreamARN}},
	}
	playbackOps := map[string]bool{"/getHLSStreamingSessionURL": true, "/getDASHStreamingSessionURL": true, "/getClip": true}
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
		r := post(t, srv.url, op.path, op.in, creds, time.Time{}, nil)
		if r.Status == 403 || r.Status == 401 {
			t.Errorf("signed right: %s: %d %s", op.path, r.Status, r.errorType())
		}
		// The playback operations have something to play: they succeed.
		if playbackOps[op.path] && r.Status != 200 {
			t.Errorf("signed right: %s: %d %s %s", op.path, r.Status, r.errorType(), r.message())
		}
	}
	waitStatus(t, srv.url, "guarded-2", "ACTIVE") // created by the signed CreateStream above
	if r, acks := putMediaOnce(t, srv.url, "guarded-2", append(append([]byte(nil), header...), frags[0]...), creds, time.Time{}, nil); r.Status != 200 || len(acks) == 0 {
		t.Errorf("PutMedia signed right: %d %s", r.Status, r.Body)
	}
}

var tokenRE = regexp.MustCompile(`SessionToken=([^&]+)`)

// TestPlaybackResourcesNeedTheirSessionToken: the players' GETs under
// /hls/v1/ and /dash/v1/ are not signed with SigV4; the session token
// protects them. Through the real binary, for every playlist, manifest,
// initialization and media segment of HLS (fMP4 and MPEG-TS) and DASH
// sessions, a request without the token, with a token changed in any
// part, cut short, signed by another server, or of another protocol is
// refused with 403 NotAuthorizedException in the service's shape (a
// Message, a request ID) — also when the request carries a valid SigV4
// signature instead — and a valid token does not reach another stream's
// fragments.
func TestPlaybackResourcesNeedTheirSessionToken(t *testing.T) {
	t.Parallel()
	srv := startServe(t, serveArgs(t.TempDir())...)
	other := startServe(t, serveArgs(t.TempDir())...)
	header, frags, _ := fixtureFragments(t, "h264-baseline.h264", time.Now().Add(-time.Minute).Truncate(time.Second))
	for _, s := range []*serveProc{srv, other} {
		createActive(t, s.url, "guarded", 24)
		sendAll(t, s.url, "guarded", header, frags[:3])
	}
	createActive(t, srv.url, "elsewhere", 24)
	elsewhere := sendAll(t, srv.url, "elsewhere", header, frags[:1])

	around := map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": map[string]any{
		"StartTimestamp": time.Now().Add(-time.Hour).Unix(), "EndTimestamp": time.Now().Add(time.Hour).Unix()}}
	session := func(s *serveProc, path string, in map[string]any) string {
		t.Helper()
		var out struct{ HLSStreamingSessionURL, DASHStreamingSessionURL string }
		callOK(t, s.url, path, in, &out)
		return out.HLSStreamingSessionURL + out.DASHStreamingSessionURL
	}
	hlsIn := map[string]any{"StreamName": "guarded", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": around}
	tsIn := map[string]any{"StreamName": "guarded", "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": around, "ContainerFormat": "MPEG_TS"}
	dashIn := map[string]any{"StreamName": "guarded", "PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": around}
	hls := session(srv, "/getHLSStreamingSessionURL", hlsIn)
	dash := session(srv, "/getDASHStreamingSessionURL", dashIn)
	otherToken := tokenRE.FindStringSubmatch(session(other, "/getHLSStreamingSessionURL", hlsIn))[1]
	dashToken := tokenRE.FindStringSubmatch(dash)[1]

	var urls []string
	for _, u := range []string{hls, session(srv, "/getHLSStreamingSessionURL", tsIn), dash} {
		urls = append(urls, playbackURLs(t, u)...)
	}
	kinds := map[string]bool{}
	for _, u := range urls {
		kinds[u[strings.Index(u, "/v1/")+4:strings.Index(u, "?")]] = true
	}
	if len(kinds) != 6 {
		t.Fatalf("the sessions name %d kinds of resources, want all 6: %v", len(kinds), kinds)
	}

	refused := func(what, u string, signed bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if signed {
			sign(t, req, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := apiResult{Status: resp.StatusCode, Header: resp.Header, Body: body}
		if r.Status != 403 || r.errorType() != "NotAuthorizedException" || r.message() == "" || r.Header.Get("x-amzn-RequestId") == "" {
			t.Errorf("%s: %s answers %d %s %s", what, u[strings.Index(u, "/v1/")+4:], r.Status, r.errorType(), body)
		}
	}
	for _, u := range urls {
		if code, _ := httpStatus(t, u); code != 200 {
			t.Fatalf("with its token %s answers %d", u, code)
		}
		token := tokenRE.FindStringSubmatch(u)[1]
		with := func(tok string) string { return strings.Replace(u, "SessionToken="+token, "SessionToken="+tok, 1) }
		refused("no token", strings.Replace(u, "SessionToken="+token, "", 1), false)
		refused("no token, SigV4-signed instead", strings.Replace(u, "SessionToken="+token, "", 1), true)
		for _, at := range []int{0, len(token) / 2, len(token) - 1} { // the version, the fields, the signature
			c := byte('A')
			if token[at] == 'A' {
				c = 'B'
			}
			refused("a token changed at "+strconv.Itoa(at), with(token[:at]+string(c)+token[at+1:]), false)
		}
		refused("a token cut short", with(token[:len(token)-4]), false)
		refused("another server's token", with(otherToken), false)
		if strings.Contains(u, "/hls/") {
			refused("a DASH session's token", with(dashToken), false)
		}
	}
	// A valid token names its stream: another stream's fragment is not
	// served through it.
	for _, u := range urls {
		if m := fragmentParamRE.FindStringSubmatch(u); m != nil && strings.Contains(u, "MediaFragment") {
			code, h := httpStatus(t, strings.Replace(u, m[1], elsewhere[0], 1))
			if typ := (apiResult{Header: h}).errorType(); code != 404 || typ != "ResourceNotFoundException" {
				t.Fatalf("another stream's fragment through a session: %d %s", code, typ)
			}
			break
		}
	}
}
