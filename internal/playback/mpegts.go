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
	markDiscontinuity(buf.Bytes())
	return buf.Bytes(), nil
}

// markDiscontinuity sets the discontinuity indicator in the first packet
// of each elementary stream that has an adaptation field (the writer gives
// one to key frames and audio). Each segment is written on its own, so its
// continuity counters start at 0 rather than where the previous segment's
// ended; the indicator tells demuxers this is expected, so that they do
// not flag the first frame of every segment as corrupt. mediacommon's
// writer has no option for it: it is one bit of the packet header.
func markDiscontinuity(ts []byte) {
	const size = 188
	seen := map[uint16]bool{}
	for off := 0; off+size <= len(ts); off += size {
		p := ts[off : off+size]
		pid := uint16(p[1]&0x1f)<<8 | uint16(p[2])
		if p[0] != 0x47 || seen[pid] || pid < 0x20 {
			continue // not a packet, already marked, or a table
		}
		seen[pid] = true
		if p[3]&0x20 != 0 && p[4] > 0 { // adaptation field with flags
			p[5] |= 0x80
		}
	}
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
