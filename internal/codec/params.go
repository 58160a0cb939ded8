package codec

import (
	"bytes"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// Info is what the sequence parameter set says about a video stream.
type Info struct {
	Codec  Codec
	Width  int
	Height int
	// FPS is the frame rate from the SPS timing info; 0 when absent.
	FPS float64
	// Profile and Level as the standard names them, e.g. "High", "4.0".
	Profile string
	Level   string
	// BitDepth of luma samples.
	BitDepth int
}

func (i Info) String() string {
	s := fmt.Sprintf("%s %s@%s %dx%d", i.Codec, i.Profile, i.Level, i.Width, i.Height)
	if i.FPS > 0 {
		s += fmt.Sprintf(" %.4g fps", i.FPS)
	}
	return s
}

// Params tracks the parameter sets of an H.264 or H.265 stream as access
// units go by, and builds the codec private data from them.
type Params struct {
	Codec Codec

	vps, sps []byte
	pps      [][]byte // distinct PPS ids, in order of first appearance
	info     Info

	h264SPS h264.SPS
	h265SPS h265.SPS
	h265PPS h265.PPS
}

// Ready reports whether every parameter set the codec needs was seen.
func (p *Params) Ready() bool {
	if p.Codec == H265 && p.vps == nil {
		return false
	}
	return p.sps != nil && len(p.pps) > 0
}

// Info returns what the current SPS says; valid once an SPS was seen.
func (p *Params) Info() Info { return p.info }

// SPS returns the current sequence parameter set NAL unit.
func (p *Params) SPS() []byte { return p.sps }

// Update takes the parameter sets found in an access unit and reports
// whether any of them changed. A malformed SPS is an error and leaves the
// previous state in place.
func (p *Params) Update(au [][]byte) (changed bool, err error) {
	for _, n := range au {
		c, err := p.updateNALU(n)
		if err != nil {
			return changed, err
		}
		changed = changed || c
	}
	return changed, nil
}

func (p *Params) updateNALU(n []byte) (bool, error) {
	t := p.Codec.NALUType(n)
	switch {
	case p.Codec == H264 && t == h264SPS, p.Codec == H265 && t == h265SPS:
		if bytes.Equal(n, p.sps) {
			return false, nil
		}
		if err := p.parseSPS(n); err != nil {
			return false, err
		}
		p.sps = append([]byte(nil), n...)
		return true, nil
	case p.Codec == H264 && t == h264PPS, p.Codec == H265 && t == h265PPS:
		return p.updatePPS(n)
	case p.Codec == H265 && t == h265VPS:
		if bytes.Equal(n, p.vps) {
			return false, nil
		}
		p.vps = append([]byte(nil), n...)
		return true, nil
	}
	return false, nil
}

func (p *Params) updatePPS(n []byte) (bool, error) {
	id, err := p.ppsID(n)
	if err != nil {
		return false, fmt.Errorf("%w: PPS: %w", ErrInvalidNALU, err)
	}
	if p.Codec == H265 {
		var pps h265.PPS
		if err := pps.Unmarshal(n); err != nil {
			return false, fmt.Errorf("%w: PPS: %w", ErrInvalidNALU, err)
		}
		p.h265PPS = pps
	}
	for i, old := range p.pps {
		if oid, _ := p.ppsID(old); oid == id {
			if bytes.Equal(old, n) {
				return false, nil
			}
			p.pps[i] = append([]byte(nil), n...)
			return true, nil
		}
	}
	if len(p.pps) >= 32 {
		return false, fmt.Errorf("%w: more than 32 picture parameter sets", ErrInvalidNALU)
	}
	p.pps = append(p.pps, append([]byte(nil), n...))
	return true, nil
}

func (p *Params) ppsID(n []byte) (uint32, error) {
	hdr := 1
	if p.Codec == H265 {
		hdr = 2
	}
	if len(n) <= hdr {
		return 0, errShortHeader
	}
	var tmp [8]byte
	br := bitReader{buf: unescapeRBSP(tmp[:], n[hdr:])}
	return br.ue()
}

func (p *Params) parseSPS(n []byte) (err error) {
	// The SPS parsers index into attacker-controlled bytes; a panic there
	// must not take a camera stream down with it.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrUnsupportedSPS, r)
		}
	}()
	if p.Codec == H265 {
		return p.parseH265SPS(n)
	}
	return p.parseH264SPS(n)
}

func (p *Params) parseH264SPS(n []byte) error {
	var s h264.SPS
	if err := s.Unmarshal(n); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedSPS, err)
	}
	info := Info{
		Codec:    H264,
		Width:    s.Width(),
		Height:   s.Height(),
		FPS:      s.FPS(),
		Profile:  h264ProfileName(s.ProfileIdc, s.ConstraintSet1Flag),
		Level:    fmt.Sprintf("%d.%d", s.LevelIdc/10, s.LevelIdc%10),
		BitDepth: int(s.BitDepthLumaMinus8) + 8,
	}
	if s.ProfileIdc == 66 && s.ConstraintSet3Flag && s.LevelIdc == 11 {
		info.Level = "1b"
	}
	if info.Width <= 0 || info.Height <= 0 {
		return fmt.Errorf("%w: picture size %dx%d", ErrUnsupportedSPS, info.Width, info.Height)
	}
	p.h264SPS, p.info = s, info
	return nil
}

func (p *Params) parseH265SPS(n []byte) error {
	var s h265.SPS
	if err := s.Unmarshal(n); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedSPS, err)
	}
	ptl := s.ProfileTierLevel
	info := Info{
		Codec:    H265,
		Width:    s.Width(),
		Height:   s.Height(),
		FPS:      s.FPS(),
		Profile:  h265ProfileName(ptl.GeneralProfileIdc),
		Level:    fmt.Sprintf("%g", float64(ptl.GeneralLevelIdc)/30),
		BitDepth: int(s.BitDepthLumaMinus8) + 8,
	}
	if info.Width <= 0 || info.Height <= 0 {
		return fmt.Errorf("%w: picture size %dx%d", ErrUnsupportedSPS, info.Width, info.Height)
	}
	p.h265SPS, p.info = s, info
	return nil
}

func h264ProfileName(idc uint8, cs1 bool) string {
	switch idc {
	case 66:
		if cs1 {
			return "Constrained Baseline"
		}
		return "Baseline"
	case 77:
		return "Main"
	case 88:
		return "Extended"
	case 100:
		return "High"
	case 110:
		return "High 10"
	case 122:
		return "High 4:2:2"
	case 244:
		return "High 4:4:4 Predictive"
	}
	return fmt.Sprintf("profile %d", idc)
}

func h265ProfileName(idc uint8) string {
	switch idc {
	case 1:
		return "Main"
	case 2:
		return "Main 10"
	case 3:
		return "Main Still Picture"
	case 4:
		return "Range Extensions"
	}
	return fmt.Sprintf("profile %d", idc)
}

// CodecPrivate returns the decoder configuration record for Matroska's
// CodecPrivate: avcC (ISO/IEC 14496-15 5.3.3) for H.264, hvcC (8.3.3) for
// H.265.
func (p *Params) CodecPrivate() ([]byte, error) {
	if !p.Ready() {
		return nil, ErrNoParamSets
	}
	if p.Codec == H265 {
		return buildHVCC(p.vps, p.sps, p.pps, &p.h265SPS)
	}
	return buildAVCC(p.sps, p.pps, &p.h264SPS)
}

// maxReorder returns how many pictures the SPS allows to precede any
// picture in decoding order and follow it in output order: H.265
// sps_max_num_reorder_pics, H.264 max_num_reorder_frames when the VUI has
// it, else a guess from the profile (0 for Baseline, which has no
// B-frames, else 2, x264's usual depth).
func (p *Params) maxReorder() int32 {
	if p.Codec == H265 {
		if n := len(p.h265SPS.MaxNumReorderPics); n > 0 {
			return int32(min(p.h265SPS.MaxNumReorderPics[n-1], 16))
		}
		return 0
	}
	s := &p.h264SPS
	if s.VUI != nil && s.VUI.BitstreamRestriction != nil {
		return int32(min(s.VUI.BitstreamRestriction.MaxNumReorderFrames, 16))
	}
	if s.ProfileIdc == 66 {
		return 0
	}
	return 2
}
