package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// maxRequestBody bounds JSON request bodies; the largest real one
// (GetMediaForFragmentList with 1000 fragment numbers) is about 130 kB.
const maxRequestBody = 1 << 20

// decodeJSON decodes a request body into v. An empty body is an empty
// object, as the AWS CLI sends for calls without parameters.
func decodeJSON(body []byte, v any) *apiError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errorf(400, "SerializationException", "the request body is not valid JSON for this operation: %v", err)
	}
	if dec.More() {
		return errorf(400, "SerializationException", "the request body has data after the JSON object")
	}
	return nil
}

// The service model's patterns, compiled when first used: their counted
// repetitions ({1,256}) make large programs, which every kvsgo command
// (put too) would otherwise build at start-up.
var (
	streamNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,256}$`) })
	deviceNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`) })
	mediaTypeRE  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*$`)
	})
	arnRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:[a-z\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+$`)
	})
	fragNumRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]{1,128}$`) })
)

// epochTime is a timestamp as AWS JSON protocols send it: epoch seconds as
// a number (the SDKs), or an ISO 8601 string (accepted for hand-written
// requests).
type epochTime struct{ time.Time }

func (t *epochTime) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if v, err := strconv.ParseFloat(s, 64); err == nil {
			return t.setSeconds(v)
		}
		parsed, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("timestamp %q is neither epoch seconds nor ISO 8601", s)
		}
		t.Time = parsed
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	return t.setSeconds(v)
}

func (t *epochTime) setSeconds(v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e11 {
		return fmt.Errorf("timestamp %v out of range", v)
	}
	sec, frac := math.Modf(v)
	t.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
	return nil
}

// epochSeconds renders a time the way the service does: seconds as a JSON
// number with millisecond precision.
func epochSeconds(t time.Time) json.Number {
	return json.Number(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
}

func msSeconds(ms int64) json.Number { return epochSeconds(time.UnixMilli(ms)) }
