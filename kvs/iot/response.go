package iot

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Source is aws.Credentials.Source for credentials from this package.
const Source = "AWSIoTCredentialProvider"

// parseCredentials reads the endpoint's answer to a successful request:
// {"credentials":{"accessKeyId","secretAccessKey","sessionToken","expiration"}},
// the expiration in RFC 3339 ("2023-02-06T05:54:46Z").
func parseCredentials(body []byte) (aws.Credentials, error) {
	var r struct {
		Credentials *struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return aws.Credentials{}, fmt.Errorf("not the JSON the credentials endpoint sends: %w", err)
	}
	c := r.Credentials
	if c == nil {
		return aws.Credentials{}, errors.New(`no "credentials" in the answer`)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"accessKeyId", c.AccessKeyID}, {"secretAccessKey", c.SecretAccessKey},
		{"sessionToken", c.SessionToken}, {"expiration", c.Expiration}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return aws.Credentials{}, fmt.Errorf("the credentials lack %s", strings.Join(missing, ", "))
	}
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("expiration %q is not an RFC 3339 time", c.Expiration)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
		Source: Source, CanExpire: true, Expires: exp}, nil
}

// parseMessage reads an error answer's {"message": "..."}; anything else
// comes back as it is, trimmed and cut short.
func parseMessage(body []byte) string {
	var r struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &r); err == nil && r.Message != "" {
		return r.Message
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}
