package server

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kvsgo/kvsgo/internal/store"
)

// tagText reports whether s is made of what the service's model allows in
// tag keys and values, ^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$: letters,
// separators, numbers and _.:/=+-@. A function, not a regexp: compiling
// those Unicode classes at start-up cost every kvsgo command (put too)
// half a megabyte and several milliseconds.
func tagText(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.Is(unicode.Z, r) && !unicode.IsNumber(r) && !strings.ContainsRune("_.:/=+-@", r) {
			return false // an invalid byte reads as U+FFFD, which is none of these
		}
	}
	return true
}

const (
	maxTagKey   = 128
	maxTagValue = 256
)

func checkTagKey(k string) *apiError {
	if n := utf8.RuneCountInString(k); n < 1 || n > maxTagKey {
		return invalidArgument("Tag key %q is %d characters long; keys are 1 to %d characters.", k, n, maxTagKey)
	}
	if !tagText(k) {
		return invalidArgument("Tag key %q has a character tags cannot have; use letters, digits, spaces and _.:/=+-@.", k)
	}
	return nil
}

func checkTags(tags map[string]string) *apiError {
	for k, v := range tags {
		if err := checkTagKey(k); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(v); n > maxTagValue {
			return invalidArgument("The value of tag %q is %d characters long; values are at most %d characters.", k, n, maxTagValue)
		}
		if !tagText(v) {
			return invalidArgument("The value of tag %q has a character tags cannot have; use letters, digits, spaces and _.:/=+-@.", k)
		}
	}
	return nil
}

func checkTagKeys(keys []string) *apiError {
	if len(keys) < 1 || len(keys) > maxTags {
		return invalidArgument("TagKeyList must list 1 to %d keys.", maxTags)
	}
	for _, k := range keys {
		if err := checkTagKey(k); err != nil {
			return err
		}
	}
	return nil
}

func tagsOf(st store.Stream) map[string]string {
	if st.Tags == nil {
		return map[string]string{}
	}
	return st.Tags
}

// resolveTaggable finds the stream a tag operation names: any but one
// being deleted.
func (s *Server) resolveTaggable(ref streamRef) (store.Stream, error) {
	st, err := s.resolve(ref)
	if err != nil {
		return st, err
	}
	if st.Status == store.StatusDeleting {
		return store.Stream{}, notActive()
	}
	return st, nil
}

// resourceARN resolves the ResourceARN of TagResource, UntagResource and
// ListTagsForResource. Streams are the only resources kvsgo serve has (no
// signaling channels).
func (s *Server) resourceARN(arn string) (store.Stream, error) {
	if arn == "" {
		return store.Stream{}, invalidArgument("ResourceARN is required.")
	}
	if len(arn) > 1024 || !arnRE().MatchString(arn) {
		return store.Stream{}, invalidArgument("ResourceARN %q is not a Kinesis Video Streams ARN.", arn)
	}
	return s.resolveTaggable(streamRef{StreamARN: arn})
}

func (s *Server) tagResource(req *request) (any, error) {
	var in struct {
		ResourceARN string `json:"ResourceARN"`
		Tags        []struct {
			Key   *string `json:"Key"`
			Value *string `json:"Value"`
		} `json:"Tags"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if len(in.Tags) < 1 || len(in.Tags) > maxTags {
		return nil, invalidArgument("Tags must list 1 to %d tags.", maxTags)
	}
	tags := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		if t.Key == nil || t.Value == nil {
			return nil, invalidArgument("Each tag needs a Key and a Value.")
		}
		tags[*t.Key] = *t.Value
	}
	if err := checkTags(tags); err != nil {
		return nil, err
	}
	st, err := s.resourceARN(in.ResourceARN)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.store.TagStream(st.ID, tags, maxTags)
}

func (s *Server) untagResource(req *request) (any, error) {
	var in struct {
		ResourceARN string   `json:"ResourceARN"`
		TagKeyList  []string `json:"TagKeyList"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	if err := checkTagKeys(in.TagKeyList); err != nil {
		return nil, err
	}
	st, err := s.resourceARN(in.ResourceARN)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.store.UntagStream(st.ID, in.TagKeyList)
}

func (s *Server) listTagsForResource(req *request) (any, error) {
	var in struct {
		ResourceARN string `json:"ResourceARN"`
		NextToken   string `json:"NextToken"`
	}
	if err := decodeJSON(req.body, &in); err != nil {
		return nil, err
	}
	st, err := s.resourceARN(in.ResourceARN)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Tags": tagsOf(st)}, nil
}
