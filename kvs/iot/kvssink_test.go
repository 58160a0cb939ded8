package iot

import (
	"strings"
	"testing"
)

func TestParseKVSSinkCertificate(t *testing.T) {
	// As AWS's documentation writes it for gst-launch-1.0.
	c, err := ParseKVSSinkCertificate("iot-certificate,endpoint=c2abc.credentials.iot.us-west-2.amazonaws.com,cert-path=/etc/kvs/cert.pem," +
		"key-path=/etc/kvs/private.key,ca-path=/etc/kvs/AmazonRootCA1.pem,role-aliases=KvsCameraIoTRoleAlias")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Endpoint: "c2abc.credentials.iot.us-west-2.amazonaws.com", CertFile: "/etc/kvs/cert.pem", KeyFile: "/etc/kvs/private.key",
		CAFile: "/etc/kvs/AmazonRootCA1.pem", RoleAlias: "KvsCameraIoTRoleAlias"}
	if c.Endpoint != want.Endpoint || c.CertFile != want.CertFile || c.KeyFile != want.KeyFile || c.CAFile != want.CAFile ||
		c.RoleAlias != want.RoleAlias || c.ThingName != "" {
		t.Fatalf("%+v", c)
	}
	// Typed and quoted values, spaces, the thing name.
	c, err = ParseKVSSinkCertificate(`iot-certificate, endpoint=(string)e.credentials.iot.eu-west-1.amazonaws.com, cert-path="/my certs/c,1.pem", ` +
		`key-path=(string)"/k\"ey.pem", role-aliases=r, iot-thing-name=porch`)
	if err != nil {
		t.Fatal(err)
	}
	if c.CertFile != "/my certs/c,1.pem" || c.KeyFile != `/k"ey.pem` || c.ThingName != "porch" || c.CAFile != "" {
		t.Fatalf("%+v", c)
	}
	for in, msg := range map[string]string{
		"":                "empty",
		"iot-certificate": "missing endpoint, cert-path, key-path, role-aliases",
		"iot-certificate,endpoint=e,cert-path=c,key-path=k":                           "missing role-aliases",
		"iot-certificate,endpoint=e,cert-path=c,key-path=k,role-aliases=r,region=x":   `unknown field "region"`,
		"iot-certificate,endpoint=e,endpoint=f,cert-path=c,key-path=k,role-aliases=r": "endpoint given twice",
		"iot-certificate,endpoint=(int)5,cert-path=c,key-path=k,role-aliases=r":       "kvssink takes strings only",
		`iot-certificate,endpoint="e,cert-path=c`:                                     "a quote is not closed",
		`iot-certificate,endpoint="e" x,cert-path=c,key-path=k,role-aliases=r`:        `"x" after the closing quote`,
		"iot-certificate,endpoint=,cert-path=c,key-path=k,role-aliases=r":             "empty value",
		"iot-certificate,endpoint":                                                    `"endpoint" is not key=value`,
		"kvs-certificate,endpoint=e,cert-path=c,key-path=k,role-aliases=r":            "not iot-certificate",
		"iot-certificate,endpoint=(string e,cert-path=c,key-path=k,role-aliases=r":    "not closed",
	} {
		if _, err := ParseKVSSinkCertificate(in); err == nil || !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), "kvssink iot-certificate: ") {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
}

func FuzzParseKVSSinkCertificate(f *testing.F) {
	for _, s := range []string{
		"iot-certificate,endpoint=e,cert-path=c,key-path=k,ca-path=a,role-aliases=r,iot-thing-name=t",
		`iot-certificate, endpoint=(string)"a\"b", cert-path="x,y"`, `"`, `(`, "a=b=c", ",,,", `iot-certificate,endpoint="e\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseKVSSinkCertificate(s)
		if err == nil && (c.Endpoint == "" || c.CertFile == "" || c.KeyFile == "" || c.RoleAlias == "") {
			t.Fatalf("%q accepted without a required field: %+v", s, c)
		}
	})
}
