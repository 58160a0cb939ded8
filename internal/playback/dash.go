package playback

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"time"

	"github.com/kvsgo/kvsgo/internal/store"
)

// The MPEG-DASH manifest (ISO/IEC 23009-1), written with encoding/xml: no
// DASH library is pinned, and the manifest is a plain list of the session's
// fragments.
type mpd struct {
	XMLName                    xml.Name `xml:"urn:mpeg:dash:schema:mpd:2011 MPD"`
	Profiles                   string   `xml:"profiles,attr"`
	Type                       string   `xml:"type,attr"`
	MinBufferTime              string   `xml:"minBufferTime,attr"`
	MediaPresentationDuration  string   `xml:"mediaPresentationDuration,attr,omitempty"`
	AvailabilityStartTime      string   `xml:"availabilityStartTime,attr,omitempty"`
	PublishTime                string   `xml:"publishTime,attr,omitempty"`
	MinimumUpdatePeriod        string   `xml:"minimumUpdatePeriod,attr,omitempty"`
	TimeShiftBufferDepth       string   `xml:"timeShiftBufferDepth,attr,omitempty"`
	SuggestedPresentationDelay string   `xml:"suggestedPresentationDelay,attr,omitempty"`
	Period                     period   `xml:"Period"`
}

type period struct {
	ID             string          `xml:"id,attr"`
	Start          string          `xml:"start,attr"`
	AdaptationSets []adaptationSet `xml:"AdaptationSet"`
}

type adaptationSet struct {
	ID                 int            `xml:"id,attr"`
	ContentType        string         `xml:"contentType,attr"`
	MimeType           string         `xml:"mimeType,attr"`
	SegmentAlignment   bool           `xml:"segmentAlignment,attr"`
	StartWithSAP       int            `xml:"startWithSAP,attr"`
	Representation     representation `xml:"Representation"`
	AudioChannelConfig *descriptor    `xml:"AudioChannelConfiguration,omitempty"`
}

type descriptor struct {
	SchemeIDURI string `xml:"schemeIdUri,attr"`
	Value       string `xml:"value,attr"`
}

type representation struct {
	ID                string      `xml:"id,attr"`
	Codecs            string      `xml:"codecs,attr"`
	Bandwidth         int         `xml:"bandwidth,attr"`
	Width             int         `xml:"width,attr,omitempty"`
	Height            int         `xml:"height,attr,omitempty"`
	AudioSamplingRate int         `xml:"audioSamplingRate,attr,omitempty"`
	SegmentList       segmentList `xml:"SegmentList"`
}

type segmentList struct {
	Timescale              uint32       `xml:"timescale,attr"`
	PresentationTimeOffset int64        `xml:"presentationTimeOffset,attr"`
	Initialization         sourceURL    `xml:"Initialization"`
	Timeline               []timelineS  `xml:"SegmentTimeline>S"`
	SegmentURLs            []segmentURL `xml:"SegmentURL"`
}

type sourceURL struct {
	SourceURL string `xml:"sourceURL,attr"`
}

type timelineS struct {
	T int64 `xml:"t,attr"`
	D int64 `xml:"d,attr"`
}

type segmentURL struct {
	Media string `xml:"media,attr"`
}

// isoDuration writes a duration as xs:duration (PT1.5S).
func isoDuration(d time.Duration) string {
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
}

// Manifest returns the DASH manifest of a window. ON_DEMAND is a static
// presentation starting at 0. LIVE and LIVE_REPLAY are dynamic, with the
// media timeline on the wall clock (availability starts at 1970, media
// times are epoch times), so a player finds the live edge from its clock.
// Every track is its own adaptation set; segments are listed one by one
// (fragment numbers are not a template). DASH has no mid-session codec
// change: the first entry's configuration applies.
func Manifest(sess Session, token string, w Window, tracks []*Track, now time.Time) ([]byte, error) {
	if len(w.Entries) == 0 {
		return nil, ErrNoFragments
	}
	first := w.Entries[0]
	m := mpd{
		Profiles:      "urn:mpeg:dash:profile:isoff-live:2011",
		Type:          "static",
		MinBufferTime: isoDuration(w.TargetDuration),
		Period:        period{ID: "0", Start: "PT0S"},
	}
	var total time.Duration
	for _, e := range w.Entries {
		total += e.Duration
	}
	static := sess.Mode == ModeOnDemand || w.Ended
	if static {
		last := w.Entries[len(w.Entries)-1]
		m.MediaPresentationDuration = isoDuration(last.Start.Add(last.Duration).Sub(first.Start))
	} else {
		m.Type = "dynamic"
		m.AvailabilityStartTime = time.Unix(0, 0).UTC().Format(time.RFC3339)
		m.PublishTime = now.UTC().Format(time.RFC3339Nano)
		m.MinimumUpdatePeriod = isoDuration(w.TargetDuration)
		m.TimeShiftBufferDepth = isoDuration(total)
		m.SuggestedPresentationDelay = isoDuration(3 * w.TargetDuration)
	}
	bandwidth := Bandwidth(w.Entries)
	for i, t := range tracks {
		scale := t.Timescale()
		as := adaptationSet{ID: i + 1, ContentType: "video", MimeType: "video/mp4", SegmentAlignment: true, StartWithSAP: 1}
		rep := representation{ID: strconv.Itoa(i + 1), Codecs: t.CodecString(), Bandwidth: bandwidth}
		if t.IsVideo() {
			rep.Width, rep.Height = t.Width, t.Height
		} else {
			as.ContentType, as.MimeType = "audio", "audio/mp4"
			rep.AudioSamplingRate = t.AAC.SampleRate
			rep.Bandwidth = 128000
			as.AudioChannelConfig = &descriptor{SchemeIDURI: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
				Value: strconv.Itoa(int(t.AAC.ChannelConfig))}
		}
		trackParam := strconv.FormatUint(t.Number, 10)
		sl := segmentList{Timescale: scale,
			Initialization: sourceURL{ref(MP4Init, token, "TrackNumber", trackParam, "FragmentNumber", store.FragmentNumber(first.Init))}}
		if static {
			sl.PresentationTimeOffset = ticks(first.Start.UnixMilli(), 0, scale)
		}
		for _, e := range w.Entries {
			start := ticks(e.Start.UnixMilli(), 0, scale)
			sl.Timeline = append(sl.Timeline, timelineS{T: start, D: ticks(0, e.Duration, scale)})
			sl.SegmentURLs = append(sl.SegmentURLs, segmentURL{ref(MP4Media, token, "FragmentNumber", e.Fragment.Number(), "TrackNumber", trackParam)})
		}
		rep.SegmentList = sl
		as.Representation = rep
		m.Period.AdaptationSets = append(m.Period.AdaptationSets, as)
	}
	b, err := xml.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing the DASH manifest: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}
