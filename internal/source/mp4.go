package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// MP4 reads a (progressive) MP4 file with H.264 or H.265 video and
// optionally AAC audio, or AAC audio alone. MP4 keeps its index at either end, so the file is
// read whole first.
type MP4 struct {
	R      io.Reader
	Pace   bool
	Now    func() time.Time
	Logger *slog.Logger
}

type mp4Sample struct {
	track    uint8
	dts, pts time.Duration
	key      bool
	sample   *pmp4.Sample
}

// Run implements Source.
func (m *MP4) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(m.Now, m.Logger)
	data, err := io.ReadAll(m.R)
	if err != nil {
		return fmt.Errorf("reading MP4: %w", err)
	}
	var p pmp4.Presentation
	if err := p.Unmarshal(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("reading MP4: %w (fragmented MP4 is not supported yet)", err)
	}
	var (
		tracks  []media.Track
		samples []mp4Sample
		haveV   bool
		haveA   bool
	)
	for _, t := range p.Tracks {
		var mt media.Track
		switch c := t.Codec.(type) {
		case *mp4codecs.H264, *mp4codecs.H265:
			if haveV {
				continue
			}
			vt, err := mp4VideoTrack(c)
			if err != nil {
				return err
			}
			mt, haveV = vt, true
		case *mp4codecs.MPEG4Audio:
			if haveA {
				continue
			}
			cpd, err := c.Config.Marshal()
			if err != nil {
				continue
			}
			mt = media.Track{Kind: media.KindAudio, CodecID: media.CodecAAC, CodecPrivate: cpd,
				SampleRate: float64(c.Config.SampleRate), Channels: aacChannels(c.Config.ChannelConfig)}
			haveA = true
		default:
			log.Warn("dropping an MP4 track Kinesis Video Streams players cannot use", "track", t.ID)
			continue
		}
		mt.Number = uint8(len(tracks) + 1)
		tracks = append(tracks, mt)
		dts := int64(t.TimeOffset)
		scale := time.Duration(t.TimeScale)
		if scale == 0 {
			return errors.New("MP4 track without a time scale")
		}
		for _, s := range t.Samples {
			samples = append(samples, mp4Sample{track: mt.Number,
				dts: time.Duration(dts) * time.Second / scale, pts: time.Duration(dts+int64(s.PTSOffset)) * time.Second / scale,
				key: !s.IsNonSyncSample, sample: s})
			dts += int64(s.Duration)
		}
	}
	if !haveV && !haveA {
		return errors.New("the MP4 file has no H.264, H.265 or AAC track")
	}
	// Video first: track 1 is what the service's players expect.
	if tracks[0].Kind == media.KindAudio && len(tracks) == 2 {
		tracks[0], tracks[1] = tracks[1], tracks[0]
		tracks[0].Number, tracks[1].Number = 1, 2
		for i := range samples {
			samples[i].track = 3 - samples[i].track
		}
	}
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].dts < samples[j].dts })
	if err := sink.Start(tracks); err != nil {
		return err
	}
	pace := &pacer{enabled: m.Pace, now: now}
	for _, s := range samples {
		payload, err := s.sample.GetPayload()
		if err != nil {
			return fmt.Errorf("reading an MP4 sample: %w", err)
		}
		if err := pace.wait(ctx, s.dts); err != nil {
			return err
		}
		if err := sink.Frame(media.Frame{Track: s.track, PTS: s.pts, DTS: s.dts, Key: s.key, Data: payload}); err != nil {
			return err
		}
	}
	return nil
}

// mp4VideoTrack builds the track of an MP4 H.264 or H.265 sample entry
// from its parameter sets.
func mp4VideoTrack(c mp4codecs.Codec) (media.Track, error) {
	var (
		params *codec.Params
		nalus  [][]byte
		id     string
	)
	switch v := c.(type) {
	case *mp4codecs.H264:
		params, nalus, id = &codec.Params{Codec: codec.H264}, [][]byte{v.SPS, v.PPS}, media.CodecH264
	case *mp4codecs.H265:
		params, nalus, id = &codec.Params{Codec: codec.H265}, [][]byte{v.VPS, v.SPS, v.PPS}, media.CodecH265
	}
	if _, err := params.Update(nalus); err != nil {
		return media.Track{}, fmt.Errorf("MP4 %s parameter sets: %w", params.Codec, err)
	}
	cpd, err := params.CodecPrivate()
	if err != nil {
		return media.Track{}, err
	}
	info := params.Info()
	return media.Track{Kind: media.KindVideo, CodecID: id, CodecPrivate: cpd, Name: "kinesis_video", Width: info.Width, Height: info.Height}, nil
}
