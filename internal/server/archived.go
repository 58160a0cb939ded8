package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/mkv"
)

type fragmentOut struct {
	FragmentNumber               string      `json:"FragmentNumber"`
	FragmentSizeInBytes          int64       `json:"FragmentSizeInBytes"`
	ProducerTimestamp            json.Number `json:"ProducerTimestamp"`
	ServerTimestamp              json.Number `json:"ServerTimestamp"`
	FragmentLengthInMilliseconds int64       `json:"FragmentLengthInMilliseconds"`
}

// fragmentSelector is ListFragments' FragmentSelector.
type fragmentSelector struct {
	FragmentSelectorType string `json:"FragmentSelectorType"`
	TimestampRange       *struct {
		StartTimestamp *epochTime `json:"StartTimestamp"`
		EndTimestamp   *epochTime `json:"EndTimestamp"`
	} `json:"TimestampRange"`
}

// listToken is what a ListFragments NextToken carries: the stream, where
// the next page starts, and the selector of the first request, so that a
// page asked for with the token alone lists the same range.
type listToken struct {
	Stream   store.StreamID `json:"s"`
	After    uint64         `json:"a"`
	Producer bool           `json:"p,omitempty"`
	Start    int64          `json:"b"`
	End      int64          `json:"e"`
}

func (t listToken) encode() string {
	data, _ := json.Marshal(t)
	return base64.StdEncoding.EncodeToString(data)
}

func decodeListToken(s string) (listToken, bool) {
	var t listToken
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(data, &t) != nil || t.Stream == "" {
		return t, false
	}
	return t, true
}

// noRetention is the service's answer to archived-media calls on a stream
// that keeps no data.
func noRetention(st store.Stream) *apiError {
	return invalidArgument("The requested fragments are outside of the stream retention period: stream %s keeps no data "+
		"(DataRetentionInHours is 0; GetMedia serves it live). Increase its retention with UpdateDataRetention to archive fragments.", st.Name)
}

// listFragments lists fragments in ingestion order. The service promises no
// order ("Results are in no specific order, even across pages"): clients
// must sort, e.g. by fragment number or timestamp.
func (s *Server) listFragments(req *request) (any, error) {
	var in struct {
		streamRef
		MaxResults       *int64            `json:"MaxResults"`
		NextToken        string            `json:"NextToken"`
		FragmentSelector *fragmentSelector `json:"FragmentSelector"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	maxResults := int64(1000)
	if in.MaxResults != nil {
		maxResults = *in.MaxResults
	}
	if maxResults < 1 || maxResults > 1000 {
		return nil, invalidArgument("MaxResults must be between 1 and 1000, not %d.", maxResults)
	}
	st, err := s.resolveActive(in.streamRef)
	if err != nil {
		return nil, err
	}
	q := listToken{Stream: st.ID, End: 1 << 62}
	switch {
	case in.NextToken != "":
		t, ok := decodeListToken(in.NextToken)
		if !ok || t.Stream != st.ID {
			return nil, invalidArgument("NextToken is not one this server gave out for stream %s.", st.Name)
		}
		q = t
	case in.FragmentSelector != nil:
		sel := in.FragmentSelector
		switch sel.FragmentSelectorType {
		case "PRODUCER_TIMESTAMP":
			q.Producer = true
		case "SERVER_TIMESTAMP":
		default:
			return nil, invalidArgument("FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP.")
		}
		tr := sel.TimestampRange
		if tr == nil || tr.StartTimestamp == nil || tr.EndTimestamp == nil {
			return nil, invalidArgument("TimestampRange with StartTimestamp and EndTimestamp is required.")
		}
		q.Start, q.End = tr.StartTimestamp.UnixMilli(), tr.EndTimestamp.UnixMilli()
		if q.End < q.Start {
			return nil, invalidArgument("EndTimestamp is before StartTimestamp.")
		}
	}
	if st.RetentionHours == 0 {
		return nil, noRetention(st)
	}
	cutoff := s.store.RetentionCutoff(st)
	if !q.Producer && q.End < cutoff {
		return nil, invalidArgument("The requested time range is outside of the stream retention period: stream %s keeps %d hours of data, "+
			"so nothing before %s.", st.Name, st.RetentionHours, time.UnixMilli(cutoff).UTC().Format(time.RFC3339))
	}
	out := struct {
		Fragments []fragmentOut `json:"Fragments"`
		NextToken string        `json:"NextToken,omitempty"`
	}{Fragments: []fragmentOut{}}
	more := false
	err = s.store.Scan(st.ID, q.After, func(f store.Fragment) bool {
		ts := f.ServerMS
		if q.Producer {
			ts = f.ProducerMS
		}
		if f.ServerMS < cutoff || ts < q.Start || ts > q.End {
			return true
		}
		if int64(len(out.Fragments)) == maxResults {
			more = true
			return false
		}
		out.Fragments = append(out.Fragments, fragmentOut{
			FragmentNumber: f.Number(), FragmentSizeInBytes: f.Size(),
			ProducerTimestamp: msSeconds(f.ProducerMS), ServerTimestamp: msSeconds(f.ServerMS),
			FragmentLengthInMilliseconds: f.DurationMS,
		})
		q.After = f.Seq
		return true
	})
	if err != nil {
		return nil, err
	}
	if more {
		out.NextToken = q.encode()
	}
	return out, nil
}

// Tags of GetMediaForFragmentList chunks. The API reference names the
// timestamps ..._SERVER_SIDE_TIMESTAMP and ..._PRODUCER_SIDE_TIMESTAMP; AWS's
// parser library (which its examples use on this API) reads the names
// GetMedia uses. Both are written, so either reader finds its own.
const (
	tagServerSideTimestamp   = "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"
	tagProducerSideTimestamp = "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP"
	tagExceptionErrorCode    = "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE"
	tagExceptionMessage      = "AWS_KINESISVIDEO_EXCEPTION_MESSAGE"
)

// getMediaForFragmentList streams the listed fragments, in the order asked.
func (s *Server) getMediaForFragmentList(req *request) error {
	var in struct {
		streamRef
		Fragments []string `json:"Fragments"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return err
	}
	if len(in.Fragments) < 1 || len(in.Fragments) > 1000 {
		return invalidArgument("Fragments must list 1 to 1000 fragment numbers.")
	}
	for _, n := range in.Fragments {
		if !fragNumRE().MatchString(n) {
			return invalidArgument("Fragment numbers are invalid: %q is not a fragment number (1 to 128 digits).", n)
		}
	}
	st, err := s.resolveActive(in.streamRef)
	if err != nil {
		return err
	}
	if st.RetentionHours == 0 {
		return noRetention(st)
	}
	frags := make([]store.Fragment, 0, len(in.Fragments))
	for _, n := range in.Fragments {
		seq, err := s.liveFragment(st, n)
		if err != nil {
			return invalidArgument("Fragment numbers are invalid: %v (list them with ListFragments).", err)
		}
		f, err := s.store.Fragment(st.ID, seq)
		if err != nil {
			return err
		}
		frags = append(frags, f)
	}
	w := req.w
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	var chunk []byte
	for _, f := range frags {
		if chunk, err = s.archivedChunk(chunk[:0], st, f); err != nil {
			s.log.Warn("GetMediaForFragmentList could not read a fragment", "stream", st.Name, "fragment", f.Number(), "error", err)
			code := getMediaErrInternal
			if errors.Is(err, store.ErrFragmentNotFound) {
				code = getMediaErrNotFound
			}
			// The status is sent: the error goes in-band, in both the
			// reference's tags and the ones the parser library reads.
			chunk = mkv.AppendTags(append(chunk[:0], s.chunkStart...),
				mkv.SimpleTag{Name: mkv.TagFragmentNumber, Value: f.Number()},
				mkv.SimpleTag{Name: tagExceptionErrorCode, Value: strconv.Itoa(code)},
				mkv.SimpleTag{Name: tagExceptionMessage, Value: err.Error()},
				mkv.SimpleTag{Name: mkv.TagErrorID, Value: strconv.Itoa(code)},
				mkv.SimpleTag{Name: mkv.TagErrorCode, Value: err.Error()})
			_, _ = w.Write(chunk)
			return nil
		}
		if _, err := w.Write(chunk); err != nil {
			return nil
		}
		_ = rc.Flush()
	}
	return nil
}

// archivedChunk appends one fragment as GetMediaForFragmentList sends it:
// the producer's header, the fragment number and timestamp tags, the
// fragment; no MILLIS_BEHIND_NOW or CONTINUATION_TOKEN, which only GetMedia
// has.
func (s *Server) archivedChunk(dst []byte, st store.Stream, f store.Fragment) ([]byte, error) {
	header, body, err := s.store.ReadFragment(st.ID, f)
	if err != nil {
		return dst, err
	}
	dst = append(dst, header...)
	server, producer := secondsString(f.ServerMS), secondsString(f.ProducerMS)
	dst = mkv.AppendTags(dst,
		mkv.SimpleTag{Name: mkv.TagFragmentNumber, Value: f.Number()},
		mkv.SimpleTag{Name: tagServerSideTimestamp, Value: server},
		mkv.SimpleTag{Name: tagProducerSideTimestamp, Value: producer},
		mkv.SimpleTag{Name: mkv.TagServerTimestamp, Value: server},
		mkv.SimpleTag{Name: mkv.TagProducerTS, Value: producer},
	)
	return appendKnownSize(dst, body), nil
}

// getImages answers GetImages, which GetDataEndpoint hands out an endpoint
// for, with a plain error: kvsgo serve does not decode video.
func (s *Server) getImages(*request) (any, error) {
	return nil, errorf(http.StatusNotImplemented, "NotImplementedException",
		"kvsgo serve does not implement GetImages (it would need to decode video); use GetMedia or GetClip and decode the frames yourself.")
}
