// Package kvs speaks Amazon Kinesis Video Streams' PutMedia protocol: the
// acknowledgements the service streams back and what their errors mean.
package kvs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// AckEvent is the EventType of a PutMedia acknowledgement.
type AckEvent string

// Acknowledgement event types.
const (
	AckBuffering AckEvent = "BUFFERING" // the first byte of a fragment arrived
	AckReceived  AckEvent = "RECEIVED"  // the whole fragment arrived
	AckPersisted AckEvent = "PERSISTED" // the fragment is stored durably
	AckError     AckEvent = "ERROR"     // the fragment (and the connection) failed
	AckIdle      AckEvent = "IDLE"      // keep-alive while no data arrives
)

// Ack is one line of the PutMedia response.
type Ack struct {
	EventType AckEvent
	// FragmentTimecode is the Cluster timecode exactly as the producer sent
	// it; HasTimecode is false when the line carried none (IDLE).
	FragmentTimecode int64
	HasTimecode      bool
	FragmentNumber   string
	ErrorID          int
	ErrorCode        string
}

// AppendJSON appends the ack as the service writes it: one JSON object
// and a newline.
func (a *Ack) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"EventType":"`...)
	dst = append(dst, a.EventType...)
	dst = append(dst, '"')
	if a.HasTimecode {
		dst = append(dst, `,"FragmentTimecode":`...)
		dst = strconv.AppendInt(dst, a.FragmentTimecode, 10)
	}
	if a.FragmentNumber != "" {
		dst = append(dst, `,"FragmentNumber":`...)
		dst = appendJSONString(dst, a.FragmentNumber)
	}
	if a.EventType == AckError {
		dst = append(dst, `,"ErrorId":`...)
		dst = strconv.AppendInt(dst, int64(a.ErrorID), 10)
		dst = append(dst, `,"ErrorCode":`...)
		dst = appendJSONString(dst, a.ErrorCode)
	}
	return append(dst, "}\n"...)
}

// appendJSONString appends s as a JSON string (strconv's quoting is Go's,
// not JSON's, for control characters).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// ErrMalformedAck is returned for a line that is not an acknowledgement.
var ErrMalformedAck = errors.New("malformed acknowledgement")

// ParseAck parses one acknowledgement line.
func ParseAck(line []byte) (Ack, error) {
	var raw struct {
		EventType        string          `json:"EventType"`
		FragmentTimecode json.RawMessage `json:"FragmentTimecode"`
		FragmentNumber   string          `json:"FragmentNumber"`
		ErrorID          json.RawMessage `json:"ErrorId"`
		ErrorCode        string          `json:"ErrorCode"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return Ack{}, fmt.Errorf("%w: %v", ErrMalformedAck, err)
	}
	a := Ack{EventType: AckEvent(raw.EventType), FragmentNumber: raw.FragmentNumber, ErrorCode: raw.ErrorCode}
	switch a.EventType {
	case AckBuffering, AckReceived, AckPersisted, AckError, AckIdle:
	default:
		return Ack{}, fmt.Errorf("%w: EventType %q", ErrMalformedAck, raw.EventType)
	}
	if len(raw.FragmentTimecode) > 0 && string(raw.FragmentTimecode) != "null" {
		v, err := strconv.ParseInt(string(raw.FragmentTimecode), 10, 64)
		if err != nil {
			return Ack{}, fmt.Errorf("%w: FragmentTimecode %s", ErrMalformedAck, raw.FragmentTimecode)
		}
		a.FragmentTimecode, a.HasTimecode = v, true
	}
	if a.EventType == AckError {
		v, err := strconv.Atoi(string(raw.ErrorID))
		if err != nil {
			return Ack{}, fmt.Errorf("%w: ERROR without a numeric ErrorId", ErrMalformedAck)
		}
		a.ErrorID = v
	}
	return a, nil
}
