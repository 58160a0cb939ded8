package playback

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// TSSegment returns a fragment as one MPEG-TS segment with all its tracks:
// PAT and PMT first, then the frames interleaved by decoding time, video
// with its parameter sets in-band at every key frame (TS has no other place
// for them).
func TSSegment(f *Fragment, p Placement) ([]byte, error) {
	var buf bytes.Buffer
	w := &mpegts.Writer{W: &buf}
	type packet struct {
		track int
		frame int
		dts   int64 // 90 kHz
		pts   int64
	}
	var packets []packet
	for ti, t := range f.Tracks {
		var c tscodecs.Codec
		switch t.CodecID {
		case media.CodecH264:
			c = &tscodecs.H264{}
		case media.CodecH265:
			c = &tscodecs.H265{}
		default:
			c = &tscodecs.MPEG4Audio{Config: t.AAC}
		}
		w.Tracks = append(w.Tracks, &mpegts.Track{Codec: c})
		scale := int64(t.Timescale())
		for i, st := range t.times(p.BaseMS, p.FrameInterval) {
			packets = append(packets, packet{track: ti, frame: i,
				dts: rescale(st.DTS, scale, 90000), pts: rescale(st.PTS, scale, 90000)})
		}
	}
	if err := w.Initialize(); err != nil {
		return nil, fmt.Errorf("starting an MPEG-TS segment: %w", err)
	}
	// The first packet decides which track carries the clock (PCR) and
	// when the tables are written: make it the video key frame.
	slices.SortStableFunc(packets, func(a, b packet) int {
		if (a.track == 0 && a.frame == 0) != (b.track == 0 && b.frame == 0) {
			if a.track == 0 && a.frame == 0 {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.dts, b.dts)
	})
	var nalus [][]byte
	for _, pk := range packets {
		t := f.Tracks[pk.track]
		fr := t.Frames[pk.frame]
		tt := w.Tracks[pk.track]
		// TS timestamps are 33-bit and wrap; epoch times are far beyond.
		const mask = 1<<33 - 1
		pts, dts := pk.pts&mask, pk.dts&mask
		var err error
		switch t.CodecID {
		case media.CodecH264, media.CodecH265:
			nalus, err = t.annexBNALUs(nalus[:0], fr)
			if err != nil {
				return nil, err
			}
			if t.CodecID == media.CodecH264 {
				err = w.WriteH264(tt, pts, dts, nalus)
			} else {
				err = w.WriteH265(tt, pts, dts, nalus)
			}
		default:
			err = w.WriteMPEG4Audio(tt, pts, [][]byte{fr.Data})
		}
		if err != nil {
			return nil, fmt.Errorf("writing an MPEG-TS segment: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// annexBNALUs splits a frame into NAL units and, at a key frame that
// carries no SPS of its own, puts the track's parameter sets first.
func (t *Track) annexBNALUs(dst [][]byte, fr Frame) ([][]byte, error) {
	c := codec.H264
	sps := uint8(7)
	if t.CodecID == media.CodecH265 {
		c, sps = codec.H265, 33
	}
	start := len(dst)
	for p := fr.Data; len(p) > 0; {
		n := binary.BigEndian.Uint32(p)
		dst = append(dst, p[4:4+n])
		p = p[4+n:]
	}
	if !fr.Key {
		return dst, nil
	}
	for _, n := range dst[start:] {
		if c.NALUType(n) == sps {
			return dst, nil
		}
	}
	params := [][]byte{t.SPS, t.PPS}
	aud := uint8(9)
	if t.CodecID == media.CodecH265 {
		params, aud = [][]byte{t.VPS, t.SPS, t.PPS}, 35
	}
	at := start
	if at < len(dst) && c.NALUType(dst[at]) == aud {
		at++ // an access unit delimiter stays first
	}
	return slices.Insert(dst, at, params...), nil
}
