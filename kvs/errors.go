package kvs

import "fmt"

// AckErrorInfo explains one PutMedia ErrorId in plain words.
type AckErrorInfo struct {
	ID int
	// Code is the name the service sends as ErrorCode.
	Code string
	// Retriable reports whether sending the fragment again can succeed.
	Retriable bool
	// Cause and Fix say what happened and what to do.
	Cause, Fix string
}

// PutMedia ErrorIds.
const (
	ErrIDStreamReadError          = 4000
	ErrIDFragmentSizeReached      = 4001
	ErrIDFragmentDurationReached  = 4002
	ErrIDConnectionDuration       = 4003
	ErrIDTimecodeNotMonotonic     = 4004
	ErrIDMultiTrackMKV            = 4005
	ErrIDInvalidMKVData           = 4006
	ErrIDInvalidProducerTimestamp = 4007
	ErrIDStreamNotActive          = 4008
	ErrIDMetadataLimit            = 4009
	ErrIDTrackNumberMismatch      = 4010
	ErrIDFramesMissingForTrack    = 4011
	ErrIDTooManyTracks            = 4012
	ErrIDInternal                 = 5000
	ErrIDArchival                 = 5001
)

var ackErrors = map[int]AckErrorInfo{
	4000: {4000, "STREAM_READ_ERROR", true, "the service could not read the stream from the connection", "this is usually a network interruption; the data is sent again"},
	4001: {4001, "MAX_FRAGMENT_SIZE_REACHED", false, "a fragment is larger than 50 MB", "lower the bitrate or the key-frame interval so that each fragment stays under 50 MB"},
	4002: {4002, "MAX_FRAGMENT_DURATION_REACHED", false, "a fragment is longer than 20 s: the source's key-frame interval is too long",
		"set the encoder's key-frame interval to about the frame rate (x264enc key-int-max, ffmpeg -g, rpicam-vid --intra)"},
	4003: {4003, "MAX_CONNECTION_DURATION_REACHED", true, "the connection was open for longer than 45 minutes", "the connection is renewed and streaming goes on"},
	4004: {4004, "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS", false, "a fragment's timecode is lower than the previous fragment's",
		"timestamps must not go backwards; check the source's clock, or restart the stream"},
	4005: {4005, "MORE_THAN_ONE_TRACK_FOUND", false, "the stream has more tracks than it was set up for", "send one video track, and at most one audio track"},
	4006: {4006, "INVALID_MKV_DATA", false, "the service could not parse the Matroska data", "the stream is corrupt or is not Matroska; check the source"},
	4007: {4007, "INVALID_PRODUCER_TIMESTAMP", false, "the producer timestamp is invalid", "check the device's clock (NTP)"},
	4008: {4008, "STREAM_NOT_ACTIVE", false, "the stream is not active (it was deleted, or is being created or deleted)", "check the stream in the console or with describe-stream"},
	4009: {4009, "FRAGMENT_METADATA_LIMIT_REACHED", false, "a fragment has more than 10 metadata tags", "send at most 10 tags per fragment"},
	4010: {4010, "TRACK_NUMBER_MISMATCH", false, "a frame names a track number that is not in the stream's header", "the source produced frames for an unknown track"},
	4011: {4011, "FRAMES_MISSING_FOR_TRACK", false, "a fragment has no frames for one of the stream's tracks", "every track (video and audio) needs frames in every fragment"},
	4012: {4012, "MORE_THAN_ALLOWED_TRACKS_FOUND", false, "the stream has more than 3 tracks", "send at most 3 tracks"},
	4500: {4500, "KMS_KEY_ACCESS_DENIED", false, "the stream's KMS key cannot be used", "give the caller kms:GenerateDataKey on the stream's key"},
	4501: {4501, "KMS_KEY_DISABLED", false, "the stream's KMS key is disabled", "enable the key"},
	4502: {4502, "KMS_KEY_VALIDATION_ERROR", false, "the stream's KMS key failed validation", "check the key"},
	4503: {4503, "KMS_KEY_UNAVAILABLE", false, "the stream's KMS key is unavailable", "try again later"},
	4504: {4504, "KMS_KEY_INVALID_USAGE", false, "the stream's KMS key is not for encryption", "use a symmetric encryption key"},
	4505: {4505, "KMS_KEY_INVALID_STATE", false, "the stream's KMS key is in an invalid state", "check the key"},
	4506: {4506, "KMS_KEY_NOT_FOUND", false, "the stream's KMS key was not found", "check the key"},
	4507: {4507, "STREAM_DELETED", false, "the stream was deleted", "create it again"},
	5000: {5000, "INTERNAL_ERROR", true, "the service had an internal error", "the fragment is sent again"},
	5001: {5001, "ARCHIVAL_ERROR", true, "the service could not store the fragment", "the fragment is sent again"},
}

// LookupAckError explains an ErrorId; unknown ids are retriable, as the SDK
// treats them.
func LookupAckError(id int) AckErrorInfo {
	if info, ok := ackErrors[id]; ok {
		return info
	}
	return AckErrorInfo{ID: id, Code: "UNKNOWN_ACK_ERROR", Retriable: true, Cause: fmt.Sprintf("the service reported error %d", id), Fix: "the fragment is sent again"}
}

// ErrorAck builds the ERROR acknowledgement for an ErrorId.
func ErrorAck(id int, timecode int64, hasTimecode bool, number string) Ack {
	return Ack{EventType: AckError, ErrorID: id, ErrorCode: LookupAckError(id).Code,
		FragmentTimecode: timecode, HasTimecode: hasTimecode, FragmentNumber: number}
}
