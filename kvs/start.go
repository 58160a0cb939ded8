package kvs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StartType says where a Reader starts in a stream: GetMedia's
// StartSelectorType.
type StartType string

// Start selector types.
const (
	// StartNow: the next fragment to arrive.
	StartNow StartType = "NOW"
	// StartEarliest: the oldest fragment the stream keeps.
	StartEarliest StartType = "EARLIEST"
	// StartFragmentNumber: after the given fragment (AfterFragmentNumber:
	// the service starts with the fragment that follows it).
	StartFragmentNumber StartType = "FRAGMENT_NUMBER"
	// StartServerTimestamp: the fragment holding the given server time.
	StartServerTimestamp StartType = "SERVER_TIMESTAMP"
	// StartProducerTimestamp: the fragment holding the given producer time.
	StartProducerTimestamp StartType = "PRODUCER_TIMESTAMP"
	// StartContinuationToken: right after the fragment a continuation
	// token names, as an earlier Reader left off.
	StartContinuationToken StartType = "CONTINUATION_TOKEN"
)

// StartSelector is GetMedia's StartSelector.
type StartSelector struct {
	Type StartType
	// FragmentNumber for StartFragmentNumber.
	FragmentNumber string
	// Timestamp for StartServerTimestamp and StartProducerTimestamp.
	Timestamp time.Time
	// ContinuationToken for StartContinuationToken.
	ContinuationToken string
}

// ParseStart reads the forms `kvsgo get --start` accepts: "now",
// "earliest", a fragment number (20 or more digits), a continuation token
// ("token:…"), a producer time as RFC 3339 ("2026-05-01T12:00:00Z") or
// epoch seconds ("1777636800.5"), or a time before now ("-30s", "-5m").
// Times select by producer timestamp, the camera's clock.
func ParseStart(s string, now time.Time) (StartSelector, error) {
	switch v := strings.TrimSpace(s); {
	case strings.EqualFold(v, "now"):
		return StartSelector{Type: StartNow}, nil
	case strings.EqualFold(v, "earliest"):
		return StartSelector{Type: StartEarliest}, nil
	case strings.HasPrefix(v, "token:"):
		return StartSelector{Type: StartContinuationToken, ContinuationToken: strings.TrimPrefix(v, "token:")}, nil
	case strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v[1:])
		if err != nil || d <= 0 {
			return StartSelector{}, fmt.Errorf("--start %q: a time before now looks like -30s or -5m", s)
		}
		return StartSelector{Type: StartProducerTimestamp, Timestamp: now.Add(-d)}, nil
	case len(v) >= 20 && isDigits(v):
		return StartSelector{Type: StartFragmentNumber, FragmentNumber: v}, nil
	default:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return StartSelector{Type: StartProducerTimestamp, Timestamp: t}, nil
		}
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 && secs < 1e11 {
			ms := int64(secs*1000 + 0.5)
			return StartSelector{Type: StartProducerTimestamp, Timestamp: time.UnixMilli(ms)}, nil
		}
	}
	return StartSelector{}, fmt.Errorf("--start %q: use now, earliest, a fragment number, a time (2026-05-01T12:00:00Z or epoch seconds) or -DURATION (e.g. -5m)", s)
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// compareFragmentNumbers orders two fragment numbers, which the service
// hands out "monotonically increasing based on the ingestion order": long
// decimal strings, so compared by length, then digit by digit.
func compareFragmentNumbers(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// requestJSON is the StartSelector as GetMedia's JSON body carries it.
func (s StartSelector) requestJSON() (map[string]any, error) {
	m := map[string]any{"StartSelectorType": string(s.Type)}
	switch s.Type {
	case StartNow, StartEarliest:
	case StartFragmentNumber:
		if s.FragmentNumber == "" {
			return nil, fmt.Errorf("kvs: StartFragmentNumber needs a FragmentNumber")
		}
		m["AfterFragmentNumber"] = s.FragmentNumber
	case StartServerTimestamp, StartProducerTimestamp:
		if s.Timestamp.IsZero() {
			return nil, fmt.Errorf("kvs: %s needs a Timestamp", s.Type)
		}
		// Epoch seconds as a JSON number, as the AWS SDKs send it.
		m["StartTimestamp"] = jsonSeconds(s.Timestamp)
	case StartContinuationToken:
		if s.ContinuationToken == "" {
			return nil, fmt.Errorf("kvs: StartContinuationToken needs a ContinuationToken")
		}
		m["ContinuationToken"] = s.ContinuationToken
	default:
		return nil, fmt.Errorf("kvs: unknown start selector %q", s.Type)
	}
	return m, nil
}

// jsonSeconds is a time as epoch seconds with millisecond precision.
type jsonSeconds time.Time

func (t jsonSeconds) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return fmt.Appendf(nil, "%d.%03d", ms/1000, ms%1000), nil
}

// parseSeconds reads a tag's "1519423069.070" into a time.
func parseSeconds(s string) (time.Time, bool) {
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ms int64
	if frac != "" {
		for len(frac) < 3 {
			frac += "0"
		}
		ms, err = strconv.ParseInt(frac[:3], 10, 64)
		if err != nil {
			return time.Time{}, false
		}
	}
	return time.UnixMilli(sec*1000 + ms), true
}
