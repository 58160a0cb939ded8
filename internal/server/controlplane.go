package server

import (
	"encoding/base64"
	"encoding/json"
	"slices"

	"github.com/kvsgo/kvsgo/internal/store"
)

// streamRef is how requests name a stream: by name or by ARN.
type streamRef struct {
	StreamName string `json:"StreamName"`
	StreamARN  string `json:"StreamARN"`
}

// resolveActive finds the stream a data-plane request (or GetDataEndpoint)
// names; one being created or deleted is "not found or not active", as the
// service answers. An UPDATING stream goes on working.
func (s *Server) resolveActive(ref streamRef) (store.Stream, error) {
	st, err := s.resolve(ref)
	if err != nil {
		return st, err
	}
	if st.Status != store.StatusActive && st.Status != store.StatusUpdating {
		return store.Stream{}, notActive()
	}
	return st, nil
}

// resolve finds the stream a request names, in whatever status.
func (s *Server) resolve(ref streamRef) (store.Stream, error) {
	switch {
	case ref.StreamName != "" && ref.StreamARN != "":
		return store.Stream{}, invalidArgument("Give either StreamName or StreamARN, not both.")
	case ref.StreamName != "":
		if !streamNameRE().MatchString(ref.StreamName) {
			return store.Stream{}, invalidArgument("StreamName %q must be 1-256 characters of a-z, A-Z, 0-9, '_', '.' and '-'.", ref.StreamName)
		}
		return s.store.Stream(ref.StreamName)
	case ref.StreamARN != "":
		if !arnRE().MatchString(ref.StreamARN) {
			return store.Stream{}, invalidArgument("StreamARN %q is not a Kinesis Video stream ARN.", ref.StreamARN)
		}
		return s.store.StreamByARN(ref.StreamARN)
	}
	return store.Stream{}, invalidArgument("StreamName or StreamARN is required.")
}

type streamInfo struct {
	DeviceName           string      `json:"DeviceName,omitempty"`
	StreamName           string      `json:"StreamName"`
	StreamARN            string      `json:"StreamARN"`
	MediaType            string      `json:"MediaType,omitempty"`
	KmsKeyID             string      `json:"KmsKeyId,omitempty"`
	Version              string      `json:"Version"`
	Status               string      `json:"Status"`
	CreationTime         json.Number `json:"CreationTime"`
	DataRetentionInHours int         `json:"DataRetentionInHours"`
}

func toStreamInfo(st store.Stream) streamInfo {
	return streamInfo{
		DeviceName: st.DeviceName, StreamName: st.Name, StreamARN: st.ARN, MediaType: st.MediaType,
		KmsKeyID: st.KmsKeyID, Version: st.Version, Status: st.Status,
		CreationTime: epochSeconds(st.CreationTime), DataRetentionInHours: st.RetentionHours,
	}
}

const maxTags = 50

func (s *Server) createStream(req *request) (any, error) {
	var in struct {
		DeviceName           string            `json:"DeviceName"`
		StreamName           string            `json:"StreamName"`
		MediaType            string            `json:"MediaType"`
		KmsKeyID             string            `json:"KmsKeyId"`
		DataRetentionInHours *int              `json:"DataRetentionInHours"`
		Tags                 map[string]string `json:"Tags"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if !streamNameRE().MatchString(in.StreamName) {
		return nil, invalidArgument("StreamName %q must be 1-256 characters of a-z, A-Z, 0-9, '_', '.' and '-'.", in.StreamName)
	}
	if in.DeviceName != "" && !deviceNameRE().MatchString(in.DeviceName) {
		return nil, invalidArgument("DeviceName %q must be 1-128 characters of a-z, A-Z, 0-9, '_', '.' and '-'.", in.DeviceName)
	}
	if in.MediaType != "" && (len(in.MediaType) > 128 || !mediaTypeRE().MatchString(in.MediaType)) {
		return nil, invalidArgument("MediaType %q is not a media type such as video/h264.", in.MediaType)
	}
	if len(in.Tags) > maxTags {
		return nil, errorf(400, "TagsPerResourceExceededLimitException", "A stream can have at most %d tags.", maxTags)
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	retention := 0
	if in.DataRetentionInHours != nil {
		retention = *in.DataRetentionInHours
		if retention < 0 || retention > 87600 {
			return nil, invalidArgument("DataRetentionInHours must be between 0 and 87600.")
		}
	}
	st, err := s.store.CreateStream(store.NewStream{Name: in.StreamName, DeviceName: in.DeviceName, MediaType: in.MediaType,
		KmsKeyID: in.KmsKeyID, RetentionHours: retention, Tags: in.Tags})
	if err != nil {
		return nil, err
	}
	return map[string]string{"StreamARN": st.ARN}, nil
}

func (s *Server) describeStream(req *request) (any, error) {
	var in streamRef
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	st, err := s.resolve(in)
	if err != nil {
		return nil, err
	}
	return map[string]any{"StreamInfo": toStreamInfo(st)}, nil
}

func (s *Server) listStreams(req *request) (any, error) {
	var in struct {
		MaxResults          *int   `json:"MaxResults"`
		NextToken           string `json:"NextToken"`
		StreamNameCondition *struct {
			ComparisonOperator string `json:"ComparisonOperator"`
			ComparisonValue    string `json:"ComparisonValue"`
		} `json:"StreamNameCondition"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	maxResults := 10000
	if in.MaxResults != nil {
		maxResults = *in.MaxResults
	}
	if maxResults < 1 || maxResults > 10000 {
		return nil, invalidArgument("MaxResults must be between 1 and 10000, not %d.", maxResults)
	}
	prefix := ""
	if c := in.StreamNameCondition; c != nil {
		if c.ComparisonOperator != "" && c.ComparisonOperator != "BEGINS_WITH" {
			return nil, invalidArgument("ComparisonOperator must be BEGINS_WITH.")
		}
		prefix = c.ComparisonValue
	}
	after := ""
	if in.NextToken != "" {
		b, err := base64.StdEncoding.DecodeString(in.NextToken)
		if err != nil {
			return nil, invalidArgument("NextToken is not one this server gave out.")
		}
		after = string(b)
	}
	list, more, err := s.store.ListStreams(prefix, after, maxResults)
	if err != nil {
		return nil, err
	}
	out := struct {
		StreamInfoList []streamInfo `json:"StreamInfoList"`
		NextToken      string       `json:"NextToken,omitempty"`
	}{StreamInfoList: []streamInfo{}}
	for _, st := range list {
		out.StreamInfoList = append(out.StreamInfoList, toStreamInfo(st))
	}
	if more && len(list) > 0 {
		out.NextToken = base64.StdEncoding.EncodeToString([]byte(list[len(list)-1].Name))
	}
	return out, nil
}

func (s *Server) deleteStream(req *request) (any, error) {
	var in struct {
		StreamARN      string `json:"StreamARN"`
		CurrentVersion string `json:"CurrentVersion"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if in.StreamARN == "" {
		return nil, invalidArgument("StreamARN is required.")
	}
	st, err := s.resolve(streamRef{StreamARN: in.StreamARN})
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteStream(st.ID, in.CurrentVersion); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) updateStream(req *request) (any, error) {
	var in struct {
		streamRef
		CurrentVersion string `json:"CurrentVersion"`
		DeviceName     string `json:"DeviceName"`
		MediaType      string `json:"MediaType"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if in.CurrentVersion == "" {
		return nil, invalidArgument("CurrentVersion is required.")
	}
	if in.MediaType != "" && !mediaTypeRE().MatchString(in.MediaType) {
		return nil, invalidArgument("MediaType %q is not a media type such as video/h264.", in.MediaType)
	}
	st, err := s.resolve(in.streamRef)
	if err != nil {
		return nil, err
	}
	_, err = s.store.UpdateStream(st.ID, in.CurrentVersion, func(st *store.Stream) error {
		if in.DeviceName != "" {
			st.DeviceName = in.DeviceName
		}
		if in.MediaType != "" {
			st.MediaType = in.MediaType
		}
		return nil
	})
	return struct{}{}, err
}

func (s *Server) updateDataRetention(req *request) (any, error) {
	var in struct {
		streamRef
		CurrentVersion             string `json:"CurrentVersion"`
		Operation                  string `json:"Operation"`
		DataRetentionChangeInHours int    `json:"DataRetentionChangeInHours"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if in.CurrentVersion == "" || in.DataRetentionChangeInHours < 1 {
		return nil, invalidArgument("CurrentVersion and a DataRetentionChangeInHours of at least 1 are required.")
	}
	sign := 0
	switch in.Operation {
	case "INCREASE_DATA_RETENTION":
		sign = 1
	case "DECREASE_DATA_RETENTION":
		sign = -1
	default:
		return nil, invalidArgument("Operation must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION.")
	}
	st, err := s.resolve(in.streamRef)
	if err != nil {
		return nil, err
	}
	_, err = s.store.UpdateStream(st.ID, in.CurrentVersion, func(st *store.Stream) error {
		n := st.RetentionHours + sign*in.DataRetentionChangeInHours
		if n < 0 || n > 87600 {
			return invalidArgument("Retention would become %d hours; it must stay between 0 and 87600.", n)
		}
		st.RetentionHours = n
		return nil
	})
	return struct{}{}, err
}

var apiNames = []string{"PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST",
	"GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES"}

func (s *Server) getDataEndpoint(req *request) (any, error) {
	var in struct {
		streamRef
		APIName string `json:"APIName"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if !slices.Contains(apiNames, in.APIName) {
		return nil, invalidArgument("APIName %q is not one of %v.", in.APIName, apiNames)
	}
	st, err := s.resolveActive(in.streamRef)
	if err != nil {
		return nil, err
	}
	if ae := s.allow("GetDataEndpoint", st.ID, getDataEndpointTPS); ae != nil {
		return nil, ae
	}
	return map[string]string{"DataEndpoint": s.baseURL(req.r)}, nil
}

func (s *Server) tagStream(req *request) (any, error) {
	var in struct {
		streamRef
		Tags map[string]string `json:"Tags"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if len(in.Tags) == 0 {
		return nil, invalidArgument("Tags is required.")
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	st, err := s.resolveTaggable(in.streamRef)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.store.TagStream(st.ID, in.Tags, maxTags)
}

func (s *Server) untagStream(req *request) (any, error) {
	var in struct {
		streamRef
		TagKeyList []string `json:"TagKeyList"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if err := checkTagKeys(in.TagKeyList); err != nil {
		return nil, err
	}
	st, err := s.resolveTaggable(in.streamRef)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.store.UntagStream(st.ID, in.TagKeyList)
}

func (s *Server) listTagsForStream(req *request) (any, error) {
	var in struct {
		streamRef
		NextToken string `json:"NextToken"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	st, err := s.resolveTaggable(in.streamRef)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Tags": tagsOf(st)}, nil
}
