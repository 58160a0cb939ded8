package iot

import (
	"strings"
	"testing"
	"time"
)

func TestParseCredentials(t *testing.T) {
	c, err := parseCredentials([]byte(`{"credentials":{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":"2023-02-06T05:54:46Z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "ASIA1" || c.SecretAccessKey != "s" || c.SessionToken != "t" || !c.CanExpire ||
		!c.Expires.Equal(time.Date(2023, 2, 6, 5, 54, 46, 0, time.UTC)) || c.Source != Source {
		t.Fatalf("%+v", c)
	}
	for body, want := range map[string]string{
		`<html>`: "not the JSON",
		`{}`:     `no "credentials"`,
		`{"credentials":{"accessKeyId":"A","expiration":"2023-02-06T05:54:46Z"}}`:                                         "lack secretAccessKey, sessionToken",
		`{"credentials":{"accessKeyId":"A","secretAccessKey":"s","sessionToken":"t","expiration":"tomorrow"}}`:            `expiration "tomorrow" is not an RFC 3339 time`,
		`{"credentials":{"accessKeyId":"A","secretAccessKey":"s","sessionToken":"t","expiration":"2023-02-06 05:54:46"}}`: "not an RFC 3339 time",
	} {
		if _, err := parseCredentials([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

func TestParseMessage(t *testing.T) {
	for body, want := range map[string]string{
		`{"message":"Access Denied"}`:           "Access Denied",
		`{"message":"Not Found","traceId":"x"}`: "Not Found",
		"  <html>busy</html>\n":                 "<html>busy</html>",
		strings.Repeat("é", 150):                strings.Repeat("é", 100) + "…",
	} {
		if got := parseMessage([]byte(body)); got != want {
			t.Errorf("%q: %q, want %q", body, got, want)
		}
	}
}

func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{
		`{"credentials":{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":"2023-02-06T05:54:46Z"}}`,
		`{"message":"Invalid thing name passed"}`, `{"credentials":null}`, `{"credentials":{"expiration":"2023-02-06T05:54:46+01:00"}}`, `[`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCredentials(b)
		if err == nil && (!c.HasKeys() || c.SessionToken == "" || !c.CanExpire || c.Expires.IsZero()) {
			t.Fatalf("accepted incomplete credentials %+v", c)
		}
		if m := parseMessage(b); len(m) > 600 && !strings.HasPrefix(string(b), "{") {
			t.Fatalf("message of %d bytes", len(m))
		}
	})
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"c2abc.credentials.iot.eu-west-1.amazonaws.com":          "c2abc.credentials.iot.eu-west-1.amazonaws.com",
		"  c2abc.credentials.iot.eu-west-1.amazonaws.com\n":      "c2abc.credentials.iot.eu-west-1.amazonaws.com",
		"https://c2abc.credentials.iot.eu-west-1.amazonaws.com":  "c2abc.credentials.iot.eu-west-1.amazonaws.com",
		"https://c2abc.credentials.iot.eu-west-1.amazonaws.com/": "c2abc.credentials.iot.eu-west-1.amazonaws.com",
		"c2abc.credentials.iot.eu-west-1.amazonaws.com:443":      "c2abc.credentials.iot.eu-west-1.amazonaws.com:443",
		"https://127.0.0.1:8443":                                 "127.0.0.1:8443",
		"creds.example.com":                                      "creds.example.com",
		"vpce-0a1b.credentials.iot.us-east-1.vpce.amazonaws.com": "vpce-0a1b.credentials.iot.us-east-1.vpce.amazonaws.com",
		"c2abc.credentials.iot.cn-north-1.amazonaws.com.cn":      "c2abc.credentials.iot.cn-north-1.amazonaws.com.cn",
	} {
		got, err := parseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"a1b2c3-ats.iot.us-east-1.amazonaws.com":         "is the AWS IoT data endpoint",
		"https://a1b2c3-ats.iot.us-east-1.amazonaws.com": "is the AWS IoT data endpoint",
		"a1b2c3.iot.us-east-1.amazonaws.com":             "is the AWS IoT data endpoint",
		"data.iot.us-east-1.amazonaws.com:8443":          "is the AWS IoT data endpoint",
		"a1b2c3-ats.iot.cn-north-1.amazonaws.com.cn":     "is the AWS IoT data endpoint",
		"": "no endpoint",
		"http://c2abc.credentials.iot.eu-west-1.amazonaws.com":         "https only",
		"c2abc.credentials.iot.eu-west-1.amazonaws.com/role-aliases/x": "is not a host name",
		"0:#":      "the port is not a number",
		"host:":    "the port is not a number",
		"https://": "is not a host name",
	} {
		if _, err := parseEndpoint(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

func TestRegionFromEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"c2abc.credentials.iot.eu-west-1.amazonaws.com":                  "eu-west-1",
		"https://c2abc.credentials.iot.ap-southeast-2.amazonaws.com:443": "ap-southeast-2",
		"a1-ats.iot.us-east-1.amazonaws.com":                             "us-east-1",
		"c2abc.credentials.iot.cn-north-1.amazonaws.com.cn":              "cn-north-1",
		"creds.example.com":   "",
		"127.0.0.1:8443":      "",
		"iot.x.amazonaws.com": "",
	} {
		if got := RegionFromEndpoint(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"c2abc.credentials.iot.eu-west-1.amazonaws.com", "https://127.0.0.1:8443", "a1-ats.iot.us-east-1.amazonaws.com", "http://x", "[::1]:443", "%zz://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, err := parseEndpoint(s)
		if err != nil {
			return
		}
		if host == "" || strings.ContainsAny(host, "/?#@ ") {
			t.Fatalf("%q accepted as %q", s, host)
		}
		_ = RegionFromEndpoint(s)
	})
}
