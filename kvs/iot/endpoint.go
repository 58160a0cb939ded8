package iot

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// describeEndpoint is the command that prints the right endpoint.
const describeEndpoint = "aws iot describe-endpoint --endpoint-type iot:CredentialProvider"

// parseEndpoint accepts the endpoint as describe-endpoint prints it (a host
// name), with a port, or as an https URL, and returns host[:port].
func parseEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("no endpoint: find yours with `%s`", describeEndpoint)
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("endpoint %q: %w", s, err)
		}
		if u.Scheme != "https" {
			return "", fmt.Errorf("endpoint %q: the credentials endpoint speaks https only", s)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return "", fmt.Errorf("endpoint %q: give the host name alone, as `%s` prints it", s, describeEndpoint)
		}
		s = u.Host
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("endpoint %q: the port is not a number from 1 to 65535", s)
		}
		host = h
	}
	if host == "" || strings.ContainsAny(host, "/ ?#@") {
		return "", fmt.Errorf("endpoint %q is not a host name: find yours with `%s`", s, describeEndpoint)
	}
	if isDataEndpoint(host) {
		return "", fmt.Errorf("endpoint %s is the AWS IoT data endpoint (MQTT and device shadows), not the credentials endpoint: "+
			"find the credentials endpoint with `%s` (it looks like xxxxxxxx.credentials.iot.%s.amazonaws.com)",
			host, describeEndpoint, orRegion(RegionFromEndpoint(host)))
	}
	return s, nil
}

// isDataEndpoint: AWS's own IoT host names that are not the credentials
// endpoint (xxxx-ats.iot.REGION.amazonaws.com, the legacy xxxx.iot.…, and
// data.iot.…). Custom domains are left alone.
func isDataEndpoint(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !strings.HasSuffix(host, ".amazonaws.com") && !strings.HasSuffix(host, ".amazonaws.com.cn") {
		return false
	}
	labels := strings.Split(host, ".")
	for i, l := range labels {
		if l == "credentials" {
			return false
		}
		if l == "iot" && i > 0 {
			return true
		}
	}
	return false
}

// RegionFromEndpoint returns the region in an AWS IoT endpoint's name
// (xxxx.credentials.iot.eu-west-1.amazonaws.com → eu-west-1), or "".
func RegionFromEndpoint(endpoint string) string {
	host := endpoint
	if h, err := parseEndpointHost(endpoint); err == nil {
		host = h
	}
	labels := strings.Split(strings.ToLower(host), ".")
	for i := 0; i+2 < len(labels); i++ {
		if labels[i] == "iot" && strings.HasPrefix(labels[i+2], "amazonaws") && strings.Count(labels[i+1], "-") >= 2 {
			return labels[i+1]
		}
	}
	return ""
}

func parseEndpointHost(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", err
		}
		return u.Hostname(), nil
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h, nil
	}
	return s, nil
}

func orRegion(r string) string {
	if r == "" {
		return "REGION"
	}
	return r
}
