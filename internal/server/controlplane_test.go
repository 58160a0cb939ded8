package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestControlPlaneWithAWSCLI drives the control plane with the real AWS CLI.
func TestControlPlaneWithAWSCLI(t *testing.T) {
	ts := startServer(t)
	run := func(args ...string) map[string]any {
		t.Helper()
		out, code, stderr := ts.aws(t, args...)
		if code != 0 {
			t.Fatalf("aws %v: exit %d: %s", args, code, stderr)
		}
		var m map[string]any
		if strings.TrimSpace(out) != "" {
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("aws %v: %v: %s", args, err, out)
			}
		}
		return m
	}
	fail := func(wantType string, args ...string) {
		t.Helper()
		_, code, stderr := ts.aws(t, args...)
		if code == 0 || !strings.Contains(stderr, "("+wantType+")") {
			t.Fatalf("aws %v: exit %d, want %s: %s", args, code, wantType, stderr)
		}
	}

	created := run("kinesisvideo", "create-stream", "--stream-name", "porch-cam", "--data-retention-in-hours", "24",
		"--media-type", "video/h264", "--device-name", "pi4", "--tags", "site=home")
	arn, _ := created["StreamARN"].(string)
	if !strings.HasPrefix(arn, "arn:aws:kinesisvideo:us-east-1:") || !strings.Contains(arn, ":stream/porch-cam/") {
		t.Fatalf("StreamARN %q", arn)
	}
	for i := range 3 {
		run("kinesisvideo", "create-stream", "--stream-name", fmt.Sprintf("garage-%d", i))
	}
	fail("ResourceInUseException", "kinesisvideo", "create-stream", "--stream-name", "porch-cam")
	fail("InvalidArgumentException", "kinesisvideo", "create-stream", "--stream-name", "bad name!")

	info := run("kinesisvideo", "describe-stream", "--stream-name", "porch-cam")["StreamInfo"].(map[string]any)
	if info["StreamARN"] != arn || info["Status"] != "ACTIVE" || info["DataRetentionInHours"].(float64) != 24 ||
		info["MediaType"] != "video/h264" || info["DeviceName"] != "pi4" {
		t.Fatalf("describe-stream: %v", info)
	}
	if byARN := run("kinesisvideo", "describe-stream", "--stream-arn", arn)["StreamInfo"].(map[string]any); byARN["StreamName"] != "porch-cam" {
		t.Fatalf("describe-stream by ARN: %v", byARN)
	}
	fail("ResourceNotFoundException", "kinesisvideo", "describe-stream", "--stream-name", "nope")

	list := run("kinesisvideo", "list-streams", "--stream-name-condition", "ComparisonOperator=BEGINS_WITH,ComparisonValue=garage")
	if names := streamNames(list); strings.Join(names, ",") != "garage-0,garage-1,garage-2" {
		t.Fatalf("list-streams with a name condition: %v", names)
	}
	// The CLI pages through with NextToken.
	paged := run("kinesisvideo", "list-streams", "--page-size", "1")
	if names := streamNames(paged); len(names) != 4 {
		t.Fatalf("list-streams one per page: %v", names)
	}

	for _, api := range []string{"PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST", "GET_HLS_STREAMING_SESSION_URL", "GET_CLIP"} {
		ep := run("kinesisvideo", "get-data-endpoint", "--stream-name", "porch-cam", "--api-name", api)
		if ep["DataEndpoint"] != ts.URL {
			t.Fatalf("get-data-endpoint %s: %v, want %s", api, ep, ts.URL)
		}
	}
	fail("ResourceNotFoundException", "kinesisvideo", "get-data-endpoint", "--stream-name", "nope", "--api-name", "GET_MEDIA")

	run("kinesisvideo", "tag-stream", "--stream-name", "porch-cam", "--tags", "owner=sam,floor=1")
	run("kinesisvideo", "untag-stream", "--stream-arn", arn, "--tag-key-list", "floor")
	tags := run("kinesisvideo", "list-tags-for-stream", "--stream-name", "porch-cam")["Tags"].(map[string]any)
	if len(tags) != 2 || tags["site"] != "home" || tags["owner"] != "sam" {
		t.Fatalf("tags %v", tags)
	}

	version := info["Version"].(string)
	run("kinesisvideo", "update-data-retention", "--stream-name", "porch-cam", "--current-version", version,
		"--operation", "INCREASE_DATA_RETENTION", "--data-retention-change-in-hours", "24")
	fail("VersionMismatchException", "kinesisvideo", "update-stream", "--stream-name", "porch-cam", "--current-version", version, "--media-type", "video/h265")
	info = run("kinesisvideo", "describe-stream", "--stream-name", "porch-cam")["StreamInfo"].(map[string]any)
	if info["DataRetentionInHours"].(float64) != 48 {
		t.Fatalf("retention after increase: %v", info["DataRetentionInHours"])
	}
	run("kinesisvideo", "update-stream", "--stream-name", "porch-cam", "--current-version", info["Version"].(string), "--media-type", "video/h265")

	run("kinesisvideo", "delete-stream", "--stream-arn", arn)
	fail("ResourceNotFoundException", "kinesisvideo", "describe-stream", "--stream-name", "porch-cam")
	fail("ResourceNotFoundException", "kinesisvideo", "delete-stream", "--stream-arn", arn)
}

func streamNames(list map[string]any) []string {
	var names []string
	for _, s := range list["StreamInfoList"].([]any) {
		names = append(names, s.(map[string]any)["StreamName"].(string))
	}
	return names
}

// TestBadCredentialsWithAWSCLI: a wrong secret and an unknown key id are
// refused with 403 and the AWS error names.
func TestBadCredentialsWithAWSCLI(t *testing.T) {
	ts := startServer(t)
	_, code, stderr := awsCLI(t, ts.URL, testKey, "wrong-secret", "kinesisvideo", "list-streams")
	if code == 0 || !strings.Contains(stderr, "InvalidSignatureException") {
		t.Fatalf("wrong secret: exit %d: %s", code, stderr)
	}
	_, code, stderr = awsCLI(t, ts.URL, "AKIDUNKNOWN", testSecret, "kinesisvideo", "list-streams")
	if code == 0 || !strings.Contains(stderr, "UnrecognizedClientException") {
		t.Fatalf("unknown key: exit %d: %s", code, stderr)
	}
	if _, code, stderr := ts.aws(t, "kinesisvideo", "list-streams"); code != 0 {
		t.Fatalf("right credentials refused: %s", stderr)
	}
}
