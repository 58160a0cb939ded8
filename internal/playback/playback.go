// Package playback turns stored KVS fragments into what players read: fMP4
// initialization and media segments, MPEG-TS segments, progressive MP4
// clips, HLS playlists and DASH manifests, and the signed session tokens
// that tie a player's requests to one stream, mode and time range. HLS,
// GetClip, DASH and the web page share it; it knows nothing of HTTP.
//
// Matroska blocks carry presentation times only. Decoding times for
// streams with B-frames are derived per fragment from the sorted
// presentation times and the stream's reorder depth (see timing.go), so
// every fragment can be remuxed on its own, in any order, and the results
// still join up.
package playback

import "errors"

// Errors a caller maps to the service's error names.
var (
	// ErrUnsupportedMedia: track 1 is not H.264, H.265 or AAC, or track 2
	// is not AAC (UnsupportedStreamMediaTypeException).
	ErrUnsupportedMedia = errors.New("unsupported stream media type")
	// ErrMissingCodecPrivate: a track has no codec private data
	// (MissingCodecPrivateDataException).
	ErrMissingCodecPrivate = errors.New("missing codec private data")
	// ErrInvalidCodecPrivate: a track's codec private data cannot be read,
	// or it changes where it may not (InvalidCodecPrivateDataException).
	ErrInvalidCodecPrivate = errors.New("invalid codec private data")
	// ErrInvalidMedia: a fragment's frames cannot be read
	// (InvalidMediaFrameException).
	ErrInvalidMedia = errors.New("invalid media frame")
)
