package iot

import (
	"errors"
	"fmt"
	"strings"
)

// kvssinkKeys are the fields of kvssink's iot-certificate property and
// where they go.
var kvssinkKeys = []string{"endpoint", "cert-path", "key-path", "ca-path", "role-aliases", "iot-thing-name"}

// ParseKVSSinkCertificate reads kvssink's iot-certificate property, a
// GStreamer structure:
//
//	iot-certificate,endpoint=E,cert-path=C,key-path=K,ca-path=CA,role-aliases=R[,iot-thing-name=T]
//
// Values may be typed ((string)V) and quoted ("V", with \" and \\). With no
// iot-thing-name, kvssink sends the stream name as the thing name; the
// caller does that (ThingName is left empty).
func ParseKVSSinkCertificate(s string) (Config, error) {
	fields, err := splitStructure(s)
	if err != nil {
		return Config{}, fmt.Errorf("kvssink iot-certificate: %w", err)
	}
	if len(fields) > 0 && !strings.Contains(fields[0], "=") {
		if name := strings.TrimSpace(fields[0]); name != "iot-certificate" {
			return Config{}, fmt.Errorf("kvssink iot-certificate: the structure is called %q, not iot-certificate", name)
		}
		fields = fields[1:]
	}
	var c Config
	seen := map[string]bool{}
	for _, f := range fields {
		key, raw, ok := strings.Cut(f, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return Config{}, fmt.Errorf("kvssink iot-certificate: %q is not key=value", strings.TrimSpace(f))
		}
		v, err := structureValue(raw)
		if err != nil {
			return Config{}, fmt.Errorf("kvssink iot-certificate: %s: %w", key, err)
		}
		if seen[key] {
			return Config{}, fmt.Errorf("kvssink iot-certificate: %s given twice", key)
		}
		seen[key] = true
		switch key {
		case "endpoint":
			c.Endpoint = v
		case "cert-path":
			c.CertFile = v
		case "key-path":
			c.KeyFile = v
		case "ca-path":
			c.CAFile = v
		case "role-aliases":
			c.RoleAlias = v
		case "iot-thing-name":
			c.ThingName = v
		default:
			return Config{}, fmt.Errorf("kvssink iot-certificate: unknown field %q (kvssink knows %s)", key, strings.Join(kvssinkKeys, ", "))
		}
	}
	var missing []string
	for _, k := range []struct{ name, v string }{{"endpoint", c.Endpoint}, {"cert-path", c.CertFile}, {"key-path", c.KeyFile}, {"role-aliases", c.RoleAlias}} {
		if k.v == "" {
			missing = append(missing, k.name)
		}
	}
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("kvssink iot-certificate: missing %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// splitStructure splits at the commas outside quotes.
func splitStructure(s string) ([]string, error) {
	var fields []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == ',':
			fields = append(fields, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, errors.New("a quote is not closed")
	}
	fields = append(fields, s[start:])
	if len(fields) == 1 && strings.TrimSpace(fields[0]) == "" {
		return nil, errors.New("empty")
	}
	return fields, nil
}

// structureValue reads one value: optional (string) type, optional quotes.
func structureValue(raw string) (string, error) {
	v := strings.TrimSpace(raw)
	if strings.HasPrefix(v, "(") {
		typ, rest, ok := strings.Cut(v[1:], ")")
		if !ok {
			return "", errors.New("a type in parentheses is not closed")
		}
		if t := strings.TrimSpace(typ); t != "string" && t != "gchararray" {
			return "", fmt.Errorf("type %s: kvssink takes strings only", t)
		}
		v = strings.TrimSpace(rest)
	}
	if !strings.HasPrefix(v, `"`) {
		if v == "" {
			return "", errors.New("empty value")
		}
		return v, nil
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '"':
			if rest := strings.TrimSpace(v[i+1:]); rest != "" {
				return "", fmt.Errorf("%q after the closing quote", rest)
			}
			if b.Len() == 0 {
				return "", errors.New("empty value")
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("a quote is not closed")
}
