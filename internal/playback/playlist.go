package playback

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/kvsgo/kvsgo/internal/store"
	"github.com/kvsgo/kvsgo/media"
)

// HLS resource names, relative to the master playlist's URL
// (/hls/v1/getHLSMasterPlaylist.m3u8), as the service names them.
const (
	HLSMaster       = "getHLSMasterPlaylist.m3u8"
	HLSMedia        = "getHLSMediaPlaylist.m3u8"
	MP4Init         = "getMP4InitFragment.mp4"
	MP4Media        = "getMP4MediaFragment.mp4"
	TSFragment      = "getTSFragment.ts"
	DASHManifest    = "getDASHManifest.mpd"
	HLSPath         = "/hls/v1/"
	DASHPath        = "/dash/v1/"
	audioGroup      = "audio"
	fmp4Version     = 7
	tsVersion       = 3
	defaultBitrate  = 1_000_000
	bitrateHeadroom = 1.2
)

// ref builds a resource reference with the session token, e.g.
// getMP4MediaFragment.mp4?FragmentNumber=…&SessionToken=…&TrackNumber=1.
func ref(resource, token string, params ...string) string {
	q := url.Values{"SessionToken": {token}}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return resource + "?" + q.Encode()
}

// hlsCodec is a track's codec as gohlslib's CODECS builder takes it.
func (t *Track) hlsCodec() codecs.Codec {
	switch t.CodecID {
	case media.CodecH264:
		return &codecs.H264{SPS: t.SPS, PPS: t.PPS}
	case media.CodecH265:
		return &codecs.H265{VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
	default:
		return &codecs.MPEG4Audio{Config: t.AAC}
	}
}

// CodecString is the track's RFC 6381 codec name (avc1.64001f, mp4a.40.2).
func (t *Track) CodecString() string { return codecparams.Marshal(t.hlsCodec()) }

// Bandwidth estimates the peak bit rate of a playlist's fragments.
func Bandwidth(entries []Entry) int {
	peak := 0.0
	for _, e := range entries {
		if s := e.Duration.Seconds(); s > 0 {
			peak = max(peak, float64(e.Fragment.BodyLen)*8/s)
		}
	}
	if peak == 0 {
		return defaultBitrate
	}
	return int(peak * bitrateHeadroom)
}

// MasterPlaylist returns the HLS master playlist of a session whose
// fragments have the given tracks: for fMP4 a media playlist per track (the
// audio one as an alternative rendition, as the service does), for
// MPEG-TS one media playlist with every track.
func MasterPlaylist(sess Session, token string, tracks []*Track, bandwidth int) ([]byte, error) {
	var codecNames []string
	for _, t := range tracks {
		codecNames = append(codecNames, t.CodecString())
	}
	m := playlist.Multivariant{Version: fmp4Version, IndependentSegments: true}
	v := &playlist.MultivariantVariant{Bandwidth: bandwidth, Codecs: codecNames}
	if tracks[0].IsVideo() && tracks[0].Width > 0 {
		v.Resolution = strconv.Itoa(tracks[0].Width) + "x" + strconv.Itoa(tracks[0].Height)
	}
	if sess.TS {
		m.Version = tsVersion
		v.URI = ref(HLSMedia, token)
	} else {
		v.URI = ref(HLSMedia, token, "TrackNumber", strconv.FormatUint(tracks[0].Number, 10))
		if len(tracks) > 1 {
			uri := ref(HLSMedia, token, "TrackNumber", strconv.FormatUint(tracks[1].Number, 10))
			channels := strconv.Itoa(int(tracks[1].AAC.ChannelConfig))
			m.Renditions = append(m.Renditions, &playlist.MultivariantRendition{
				Type: playlist.MultivariantRenditionTypeAudio, GroupID: audioGroup, Name: "audio",
				Autoselect: true, Default: true, Channels: &channels, URI: &uri,
			})
			v.Audio = audioGroup
		}
	}
	m.Variants = []*playlist.MultivariantVariant{v}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("writing the master playlist: %w", err)
	}
	return b, nil
}

// MediaPlaylist returns the HLS media playlist of a window: one segment per
// fragment, for one track (fMP4) or every track (MPEG-TS, track 0).
func MediaPlaylist(sess Session, token string, w Window, track uint64) ([]byte, error) {
	m := playlist.Media{
		Version:             fmp4Version,
		IndependentSegments: true,
		TargetDuration:      int(w.TargetDuration.Seconds()),
		Endlist:             w.Ended,
	}
	if sess.TS {
		m.Version = tsVersion
	}
	switch sess.Mode {
	case ModeOnDemand:
		vod := playlist.MediaPlaylistTypeVOD
		m.PlaylistType = &vod
	case ModeLive:
		// Players that know blocking reloads (hls.js) ask for the next
		// segment and get the playlist the moment it is stored.
		m.ServerControl = &playlist.MediaServerControl{CanBlockReload: true}
	}
	trackParam := strconv.FormatUint(track, 10)
	initURI := func(e Entry) string {
		return ref(MP4Init, token, "TrackNumber", trackParam, "FragmentNumber", store.FragmentNumber(e.Init))
	}
	if len(w.Entries) > 0 {
		first := w.Entries[0]
		m.MediaSequence = int(first.MSN)
		if dsn := first.DSN - b2u(first.Discontinuity); dsn > 0 {
			d := int(dsn)
			m.DiscontinuitySequence = &d
		}
		if !sess.TS {
			m.Map = &playlist.MediaMap{URI: initURI(first)}
		}
	}
	for _, e := range w.Entries {
		seg := &playlist.MediaSegment{Duration: e.Duration, Discontinuity: e.Discontinuity}
		if sess.TS {
			seg.URI = ref(TSFragment, token, "FragmentNumber", e.Fragment.Number())
		} else {
			seg.URI = ref(MP4Media, token, "FragmentNumber", e.Fragment.Number(), "TrackNumber", trackParam)
		}
		if sess.DisplayTimestamp {
			at := e.Start
			seg.DateTime = &at
		}
		m.Segments = append(m.Segments, seg)
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("writing a media playlist: %w", err)
	}
	if sess.TS {
		return b, nil
	}
	return insertMaps(b, w.Entries, m.Segments, initURI), nil
}

// insertMaps adds an EXT-X-MAP before each segment whose codec
// configuration differs from the one before (gohlslib writes one map per
// playlist; HLS allows one wherever the initialization changes).
func insertMaps(b []byte, entries []Entry, segs []*playlist.MediaSegment, initURI func(Entry) string) []byte {
	text := string(b)
	for i := len(entries) - 1; i > 0; i-- {
		if entries[i].Init == entries[i-1].Init {
			continue
		}
		// The tags of segment i follow the URI line of segment i-1.
		prev := "\n" + segs[i-1].URI + "\n"
		at := strings.Index(text, prev)
		if at < 0 {
			continue
		}
		at += len(prev)
		text = text[:at] + "#EXT-X-MAP:URI=\"" + initURI(entries[i]) + "\"\n" + text[at:]
	}
	return []byte(text)
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
