package server

import (
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/kvsgo/kvsgo/internal/store"
)

type fragmentOut struct {
	FragmentNumber               string      `json:"FragmentNumber"`
	FragmentSizeInBytes          int64       `json:"FragmentSizeInBytes"`
	ProducerTimestamp            json.Number `json:"ProducerTimestamp"`
	ServerTimestamp              json.Number `json:"ServerTimestamp"`
	FragmentLengthInMilliseconds int64       `json:"FragmentLengthInMilliseconds"`
}

func (s *Server) listFragments(req *request) (any, error) {
	var in struct {
		streamRef
		MaxResults       int64  `json:"MaxResults"`
		NextToken        string `json:"NextToken"`
		FragmentSelector *struct {
			FragmentSelectorType string `json:"FragmentSelectorType"`
			TimestampRange       *struct {
				StartTimestamp *epochTime `json:"StartTimestamp"`
				EndTimestamp   *epochTime `json:"EndTimestamp"`
			} `json:"TimestampRange"`
		} `json:"FragmentSelector"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if in.MaxResults == 0 {
		in.MaxResults = 1000
	}
	if in.MaxResults < 1 || in.MaxResults > 1000 {
		return nil, invalidArgument("MaxResults must be between 1 and 1000.")
	}
	var (
		producer   bool
		start, end int64 = 0, 1 << 62
	)
	if sel := in.FragmentSelector; sel != nil {
		switch sel.FragmentSelectorType {
		case "PRODUCER_TIMESTAMP":
			producer = true
		case "SERVER_TIMESTAMP":
		default:
			return nil, invalidArgument("FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP.")
		}
		tr := sel.TimestampRange
		if tr == nil || tr.StartTimestamp == nil || tr.EndTimestamp == nil {
			return nil, invalidArgument("TimestampRange with StartTimestamp and EndTimestamp is required.")
		}
		start, end = tr.StartTimestamp.UnixMilli(), tr.EndTimestamp.UnixMilli()
		if end < start {
			return nil, invalidArgument("EndTimestamp is before StartTimestamp.")
		}
	}
	st, err := s.resolve(in.streamRef)
	if err != nil {
		return nil, err
	}
	var after uint64
	if in.NextToken != "" {
		b, err := base64.StdEncoding.DecodeString(in.NextToken)
		if err == nil {
			after, err = strconv.ParseUint(string(b), 10, 64)
		}
		if err != nil {
			return nil, invalidArgument("NextToken is not one this server gave out.")
		}
	}
	out := struct {
		Fragments []fragmentOut `json:"Fragments"`
		NextToken string        `json:"NextToken,omitempty"`
	}{Fragments: []fragmentOut{}}
	var last uint64
	more := false
	err = s.store.Scan(st.Name, after, func(f store.Fragment) bool {
		ts := f.ServerMS
		if producer {
			ts = f.ProducerMS
		}
		if ts < start || ts > end {
			return true
		}
		if int64(len(out.Fragments)) == in.MaxResults {
			more = true
			return false
		}
		out.Fragments = append(out.Fragments, fragmentOut{
			FragmentNumber: f.Number(), FragmentSizeInBytes: f.Size(),
			ProducerTimestamp: msSeconds(f.ProducerMS), ServerTimestamp: msSeconds(f.ServerMS),
			FragmentLengthInMilliseconds: f.DurationMS,
		})
		last = f.Seq
		return true
	})
	if err != nil {
		return nil, err
	}
	if more {
		out.NextToken = base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(last, 10)))
	}
	return out, nil
}
